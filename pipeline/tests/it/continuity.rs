//! Segment ids across periods: partners whose archetype did not change keep
//! their segment; the migration matrix follows the true migration; when k
//! changes, the segments that persist keep their ids.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::common::{generate_into, pairs, run, segtune};

struct TwoPeriods {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

fn two_periods() -> TwoPeriods {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_path_buf();
    generate_into(&root.join("data"), &["--periods", "2"]);
    let config = std::fs::read_to_string(root.join("data/segtune.toml")).expect("config");
    std::fs::write(
        root.join("data/first.toml"),
        config.replace("2026-Q1", "2025-Q4"),
    )
    .expect("write");
    let (code, _, stderr) = run(segtune()
        .arg("run")
        .arg("--config")
        .arg(root.join("data/first.toml"))
        .arg("--out")
        .arg(root.join("run1")));
    assert_eq!(code, 0, "{stderr}");
    let second = config.replace(
        "outcomes = \"periods/2026-Q1/outcomes.parquet\"",
        "outcomes = \"periods/2026-Q1/outcomes.parquet\"\nprevious-run = \"../run1\"",
    );
    std::fs::write(root.join("data/second.toml"), &second).expect("write");
    std::fs::write(
        root.join("data/second-k5.toml"),
        format!("{second}\n[segments]\nk = 5\n"),
    )
    .expect("write");
    let (code, _, stderr) = run(segtune()
        .arg("run")
        .arg("--config")
        .arg(root.join("data/second.toml"))
        .arg("--out")
        .arg(root.join("run2")));
    assert_eq!(code, 0, "{stderr}");
    TwoPeriods { _dir: dir, root }
}

fn manifest(run_dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run_dir.join("manifest.json")).expect("manifest"))
        .expect("json")
}

#[test]
fn segment_ids_hold_from_one_period_to_the_next() {
    let periods = two_periods();
    let root = &periods.root;
    let first: HashMap<String, String> = pairs(
        &root.join("run1/segments.parquet"),
        "partner_id",
        "segment_id",
    )
    .into_iter()
    .map(|(k, v)| (k, v.expect("id")))
    .collect();
    let second = pairs(
        &root.join("run2/segments.parquet"),
        "partner_id",
        "segment_id",
    );
    let archetype_now: HashMap<String, Option<String>> = pairs(
        &root.join("data/truth/2026-Q1/archetypes.parquet"),
        "partner_id",
        "archetype",
    )
    .into_iter()
    .collect();
    let archetype_before: HashMap<String, Option<String>> = pairs(
        &root.join("data/truth/2026-Q1/archetypes.parquet"),
        "partner_id",
        "previous_archetype",
    )
    .into_iter()
    .collect();

    // 1. Partners whose archetype did not change keep their segment id.
    let (mut kept, mut unchanged) = (0usize, 0usize);
    for (partner, segment) in &second {
        let before = archetype_before[partner].as_ref();
        if before.is_some() && before == archetype_now[partner].as_ref() {
            if let Some(previous) = first.get(partner) {
                unchanged += 1;
                kept += usize::from(Some(previous) == segment.as_ref());
            }
        }
    }
    let share = kept as f64 / unchanged as f64;
    eprintln!(
        "kept their segment id: {kept} of {unchanged} unchanged partners ({:.2} %)",
        share * 100.0
    );
    assert!(
        share >= 0.97,
        "only {:.2} % kept their segment",
        share * 100.0
    );

    // 2. The migration matrix (shares of the partners present in both
    //    periods) is within 2 percentage points of the true migration, each
    //    segment standing for the archetype most of its partners have.
    let majority = |segments: &[(String, Option<String>)],
                    archetypes: &HashMap<String, Option<String>>|
     -> HashMap<String, String> {
        let mut counts: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
        for (partner, segment) in segments {
            if let (Some(segment), Some(Some(archetype))) = (segment, archetypes.get(partner)) {
                *counts
                    .entry(segment.clone())
                    .or_default()
                    .entry(archetype.clone())
                    .or_default() += 1;
            }
        }
        counts
            .into_iter()
            .map(|(s, c)| {
                (
                    s,
                    c.into_iter()
                        .max_by_key(|(_, n)| *n)
                        .map(|(a, _)| a)
                        .unwrap_or_default(),
                )
            })
            .collect()
    };
    let first_list: Vec<(String, Option<String>)> = first
        .iter()
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    let stands_before = majority(&first_list, &archetype_before);
    let stands_now = majority(&second, &archetype_now);
    let migration = pairs(
        &root.join("run2/segments.parquet"),
        "partner_id",
        "previous_segment_id",
    );
    let mut estimated: BTreeMap<(String, String), f64> = BTreeMap::new();
    let mut truth: BTreeMap<(String, String), f64> = BTreeMap::new();
    let segment_now: HashMap<&String, &Option<String>> =
        second.iter().map(|(p, s)| (p, s)).collect();
    let both: Vec<&(String, Option<String>)> = migration
        .iter()
        .filter(|(p, from)| from.is_some() && archetype_before[p].is_some())
        .collect();
    for (partner, from) in &both {
        let (Some(from), Some(to)) = (from, segment_now[partner]) else {
            continue;
        };
        *estimated
            .entry((stands_before[from].clone(), stands_now[to].clone()))
            .or_default() += 1.0 / both.len() as f64;
        let true_pair = (
            archetype_before[partner].clone().unwrap_or_default(),
            archetype_now[partner].clone().unwrap_or_default(),
        );
        *truth.entry(true_pair).or_default() += 1.0 / both.len() as f64;
    }
    let cells: std::collections::BTreeSet<&(String, String)> =
        estimated.keys().chain(truth.keys()).collect();
    let worst = cells
        .iter()
        .map(|cell| {
            (estimated.get(*cell).copied().unwrap_or(0.0)
                - truth.get(*cell).copied().unwrap_or(0.0))
            .abs()
        })
        .fold(0.0, f64::max);
    eprintln!(
        "largest difference between the migration matrix and the truth: {:.2} percentage points",
        worst * 100.0
    );
    assert!(
        worst <= 0.02,
        "the migration matrix is {:.2} percentage points off",
        worst * 100.0
    );
    assert!(root.join("run2/migration.parquet").exists());
    let drift = manifest(&root.join("run2"))["quality"]["drift"]
        .as_array()
        .cloned()
        .expect("drift");
    assert_eq!(drift.len(), 12, "one row per feature");
    assert!(
        drift.iter().all(|d| d["psi"]
            .as_f64()
            .is_some_and(|psi| (0.0..0.2).contains(&psi))),
        "default drift is small: {drift:?}"
    );
    let report = std::fs::read_to_string(root.join("run2/report.html")).expect("report");
    assert!(
        report.contains("Movement since the previous run")
            && report.contains("population stability index")
    );

    // 3. When k changes, the segments that persist keep their ids.
    let (code, _, stderr) = run(segtune()
        .arg("run")
        .arg("--config")
        .arg(root.join("data/second-k5.toml"))
        .arg("--out")
        .arg(root.join("run2-k5")));
    assert_eq!(code, 0, "{stderr}");
    let ids = |run_dir: &str| -> Vec<u64> {
        let model: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(root.join(run_dir).join("model.json")).expect("model"),
        )
        .expect("json");
        model["kmeans_segment_ids"]
            .as_array()
            .expect("ids")
            .iter()
            .filter_map(serde_json::Value::as_u64)
            .collect()
    };
    let (before, after) = (ids("run1"), ids("run2-k5"));
    let kept_ids = after.iter().filter(|id| before.contains(id)).count();
    let high_water = manifest(&root.join("run1"))["segment_id_high_water"]
        .as_u64()
        .expect("high water");
    eprintln!("k {} -> 5: ids {before:?} -> {after:?}", before.len());
    assert_eq!(
        kept_ids,
        before.len().min(5),
        "persisting segments keep their ids: {before:?} -> {after:?}"
    );
    assert!(
        after
            .iter()
            .filter(|id| !before.contains(id))
            .all(|id| *id > high_water),
        "a new segment never reuses an id"
    );
}

/// The kinds of the warnings of a run's page.
fn warning_kinds(run_dir: &Path) -> Vec<String> {
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run_dir.join("report.json")).expect("report"),
    )
    .expect("json");
    report["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .filter_map(|w| w["kind"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn a_previous_run_never_approved_is_said_in_the_log_the_manifest_and_the_page() {
    let periods = two_periods();
    let root = &periods.root;
    // run2 followed run1 while run1 was only proposed.
    assert_eq!(
        manifest(&root.join("run2"))["previous_run_status"],
        "proposed"
    );
    assert!(warning_kinds(&root.join("run2")).contains(&"Previous run not approved".to_string()));
    let run3 = |out: &str| {
        run(segtune()
            .arg("run")
            .arg("--config")
            .arg(root.join("data/second.toml"))
            .arg("--out")
            .arg(root.join(out)))
    };
    let (code, _, stderr) = run3("run2-again");
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("the previous run was never approved"),
        "{stderr}"
    );
    // Once run1 is approved, none of it.
    let (code, _, stderr) = run(segtune()
        .arg("approve")
        .arg(root.join("run1"))
        .args(["--by", "Ops"]));
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = run3("run3");
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("never approved"), "{stderr}");
    assert_eq!(
        manifest(&root.join("run3"))["previous_run_status"],
        "approved"
    );
    assert!(!warning_kinds(&root.join("run3")).contains(&"Previous run not approved".to_string()));
}
