//! k-means against scikit-learn (installed by the test command): inertia at
//! least as good on the same scaled matrix, archetypes found as well, and the
//! k sweep picking the true number of clustered archetypes.

use std::collections::HashMap;
use std::path::Path;

use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use segtune::config::{Overrides, RunSettings};
use segtune::features;
use segtune::ingest::{ingest, PartnersTable};
use segtune_data::generator::{generate, GeneratorParams};
use segtune_models::segmentation::selection::{
    adjusted_rand_index, choose, sweep, Gates, SweepParams,
};
use segtune_models::segmentation::{Precision, SegmentationParams};

use crate::common::{pairs, run_peer, segment_of, write_labels, write_matrix};

const SEEDS: [u64; 5] = [0, 1, 2, 3, 4];

fn median(values: &[f64]) -> f64 {
    segtune_models::features::median(values).expect("values")
}

fn generated(dir: &Path) -> RunSettings {
    let params = GeneratorParams::new().check().expect("defaults");
    generate(&params, dir).expect("generates");
    RunSettings::load(&dir.join("segtune.toml"), &Overrides::default()).expect("config")
}

fn our_inertias(matrix: &Array2<f64>, k: usize) -> Vec<f64> {
    SEEDS
        .iter()
        .map(|seed| {
            SegmentationParams::new(k)
                .with_n_runs(3)
                .with_seed(*seed)
                .check()
                .expect("valid")
                .fit_view(matrix.view())
                .expect("fits")
                .inertia
        })
        .collect()
}

fn their_inertias(dir: &Path, matrix: &Array2<f64>, k: usize) -> Vec<f64> {
    let path = dir.join("matrix.parquet");
    write_matrix(&path, matrix.view());
    let mut args = vec![
        path.to_string_lossy().into_owned(),
        k.to_string(),
        "3".into(),
    ];
    args.extend(SEEDS.iter().map(u64::to_string));
    let result = run_peer("pipeline/tests/peer/kmeans_peer.py", &args);
    result["inertia"]
        .as_array()
        .expect("inertias")
        .iter()
        .filter_map(serde_json::Value::as_f64)
        .collect()
}

#[test]
fn inertia_is_within_half_a_percent_of_scikit_learn_on_generated_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = generated(dir.path());
    let inputs = ingest(&settings).expect("valid");
    let matrix = features::build(
        &inputs.partners,
        &(0..inputs.partners.ids.len()).collect::<Vec<_>>(),
        &settings.features,
    )
    .expect("features")
    .matrix;
    let (ours, theirs) = (
        our_inertias(&matrix, 6),
        their_inertias(dir.path(), &matrix, 6),
    );
    eprintln!("generated data, k = 6: inertia ours {ours:?}, scikit-learn {theirs:?}, ratio of medians {:.5}", median(&ours) / median(&theirs));
    assert!(
        median(&ours) <= 1.005 * median(&theirs),
        "ours {ours:?}, scikit-learn {theirs:?}"
    );
}

#[test]
fn inertia_is_within_half_a_percent_of_scikit_learn_on_twenty_overlapping_blobs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(20);
    let (k, per_blob, dims) = (20, 1_000, 8);
    let centres: Vec<Vec<f64>> = (0..k)
        .map(|_| (0..dims).map(|_| rng.gen_range(-10.0..10.0)).collect())
        .collect();
    let noise = Normal::new(0.0, 2.5).expect("normal");
    let mut matrix = Array2::<f64>::zeros((k * per_blob, dims));
    for (blob, centre) in centres.iter().enumerate() {
        for i in 0..per_blob {
            for (j, c) in centre.iter().enumerate() {
                matrix[[blob * per_blob + i, j]] = c + noise.sample(&mut rng);
            }
        }
    }
    let (ours, theirs) = (
        our_inertias(&matrix, k),
        their_inertias(dir.path(), &matrix, k),
    );
    eprintln!(
        "20 blobs, k = 20: inertia ours {ours:?}, scikit-learn {theirs:?}, ratio of medians {:.5}",
        median(&ours) / median(&theirs)
    );
    assert!(
        median(&ours) <= 1.005 * median(&theirs),
        "ours {ours:?}, scikit-learn {theirs:?}"
    );
}

/// The partners of the four archetypes meant for clustering, with their archetype.
fn clustered_only(partners: &PartnersTable, truth: &Path) -> (PartnersTable, Vec<i64>) {
    let archetype_of: HashMap<String, String> = pairs(truth, "partner_id", "archetype")
        .into_iter()
        .map(|(partner, archetype)| (partner, archetype.expect("archetype")))
        .collect();
    let clustered = [
        "top_performer",
        "growth_partner",
        "steady_contributor",
        "low_engagement",
    ];
    let rows: Vec<usize> = (0..partners.ids.len())
        .filter(|r| clustered.contains(&archetype_of[&partners.ids[*r]].as_str()))
        .collect();
    let labels = rows
        .iter()
        .map(|r| {
            clustered
                .iter()
                .position(|c| *c == archetype_of[&partners.ids[*r]])
                .expect("clustered") as i64
        })
        .collect();
    let mut subset = partners.clone();
    subset.ids = rows.iter().map(|r| &partners.ids[*r]).collect();
    for column in &mut subset.numeric {
        column.values = rows.iter().map(|r| column.values[*r]).collect();
    }
    subset.revenue.values = rows.iter().map(|r| partners.revenue.values[*r]).collect();
    for column in &mut subset.categorical {
        column.codes = rows.iter().map(|r| column.codes[*r]).collect();
    }
    (subset, labels)
}

#[test]
fn archetypes_are_found_as_well_as_scikit_learn_and_the_sweep_picks_four() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = generated(dir.path());
    let inputs = ingest(&settings).expect("valid");
    let (partners, truth) = clustered_only(
        &inputs.partners,
        &dir.path()
            .join(format!("truth/{}/archetypes.parquet", settings.period)),
    );
    let matrix = features::build(
        &partners,
        &(0..partners.ids.len()).collect::<Vec<_>>(),
        &settings.features,
    )
    .expect("features")
    .matrix;
    let truth_usize: Vec<usize> = truth.iter().map(|l| *l as usize).collect();
    let ours: Vec<f64> = SEEDS
        .iter()
        .map(|seed| {
            let fit = SegmentationParams::new(4)
                .with_n_runs(3)
                .with_seed(*seed)
                .check()
                .expect("valid")
                .fit_view(matrix.view())
                .expect("fits");
            adjusted_rand_index(&fit.assignment.labels, &truth_usize)
        })
        .collect();
    let matrix_path = dir.path().join("matrix.parquet");
    let labels_path = dir.path().join("labels.parquet");
    write_matrix(&matrix_path, matrix.view());
    write_labels(&labels_path, &truth);
    let mut args = vec![
        matrix_path.to_string_lossy().into_owned(),
        "4".into(),
        "3".into(),
    ];
    args.extend(SEEDS.iter().map(u64::to_string));
    args.extend([
        "--labels".to_string(),
        labels_path.to_string_lossy().into_owned(),
    ]);
    let theirs: Vec<f64> = run_peer("pipeline/tests/peer/kmeans_peer.py", &args)["ari"]
        .as_array()
        .expect("ari")
        .iter()
        .filter_map(serde_json::Value::as_f64)
        .collect();
    eprintln!("four archetypes, k = 4: ARI ours {ours:?}, scikit-learn {theirs:?}");
    assert!(
        median(&ours) >= median(&theirs) - 0.02,
        "ARI ours {ours:?}, scikit-learn {theirs:?}"
    );

    let gates = Gates {
        min_share: 0.02,
        min_stability: 0.8,
    };
    let chosen: Vec<usize> = SEEDS
        .iter()
        .map(|seed| {
            let params = SweepParams {
                ks: (3..=6).collect(),
                n_runs: 3,
                max_n_iterations: 300,
                tolerance: 1e-4,
                seed: *seed,
                silhouette_sample: 10_000,
                n_bootstrap: 20,
                bootstrap_size: 20_000,
                precision: Precision::F64,
            };
            let swept = sweep(matrix.view(), &params).expect("sweeps");
            choose(&swept.scores, &gates).map_or(0, |index| swept.scores[index].k)
        })
        .collect();
    eprintln!("the sweep chose k = {chosen:?} on seeds {SEEDS:?}");
    assert!(
        chosen.iter().filter(|k| **k == 4).count() >= 4,
        "the sweep chose {chosen:?}"
    );
}

#[test]
fn with_rules_all_partners_are_segmented_at_least_as_well_as_by_scikit_learn() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = generated(dir.path());
    let run_dir = dir.path().join("run");
    segtune::run::run(
        &settings,
        &segtune::run::RunOptions {
            out: run_dir.clone(),
            force: false,
            progress: false,
            dump_design: None,
            approval: None,
        },
    )
    .expect("runs");
    let inputs = ingest(&settings).expect("valid");
    let truth_path = dir
        .path()
        .join(format!("truth/{}/archetypes.parquet", settings.period));
    // Archetype per partner, as integer labels in partners-table order.
    let archetype_of: HashMap<String, String> = pairs(&truth_path, "partner_id", "archetype")
        .into_iter()
        .map(|(partner, archetype)| (partner, archetype.expect("archetype")))
        .collect();
    let names: Vec<String> = archetype_of
        .values()
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let truth: Vec<i64> = inputs
        .partners
        .ids
        .iter()
        .map(|id| {
            names
                .iter()
                .position(|n| *n == archetype_of[id])
                .expect("known") as i64
        })
        .collect();
    // segtune's labels: every segment, rule segments included.
    let segment = segment_of(&run_dir.join("segments.parquet"));
    let ours: Vec<usize> = inputs
        .partners
        .ids
        .iter()
        .map(|id| segment[id] as usize)
        .collect();
    let truth_usize: Vec<usize> = truth.iter().map(|t| *t as usize).collect();
    let our_ari = adjusted_rand_index(&ours, &truth_usize);
    let k = ours.iter().collect::<std::collections::BTreeSet<_>>().len();
    // scikit-learn: k-means with as many segments, on the same features of every partner.
    let matrix = features::build(
        &inputs.partners,
        &(0..inputs.partners.ids.len()).collect::<Vec<_>>(),
        &settings.features,
    )
    .expect("features")
    .matrix;
    let (matrix_path, labels_path) = (
        dir.path().join("all.parquet"),
        dir.path().join("labels.parquet"),
    );
    write_matrix(&matrix_path, matrix.view());
    write_labels(&labels_path, &truth);
    let mut args = vec![
        matrix_path.to_string_lossy().into_owned(),
        k.to_string(),
        "3".into(),
        "0".into(),
    ];
    args.extend([
        "--labels".to_string(),
        labels_path.to_string_lossy().into_owned(),
    ]);
    let theirs = run_peer("pipeline/tests/peer/kmeans_peer.py", &args)["ari"][0]
        .as_f64()
        .expect("ari");
    eprintln!("all partners, {k} segments: ARI segtune (rules + k-means) {our_ari:.4}, scikit-learn k-means {theirs:.4}");
    assert!(
        our_ari >= theirs - 0.02,
        "segtune {our_ari:.4} vs scikit-learn {theirs:.4}"
    );
}
