//! k-means at the memory floor, against scikit-learn, in one invocation.
//!
//! ```text
//! cargo run --release --locked -p segtune-bench --bin kmeans -- \
//!     [--rows 1000000] [--features 16] [--k 8] [--iterations 20] \
//!     [--repeats 5] [--threads T] [--python .venv/bin/python] [--out FILE]
//! ```
//!
//! On one seeded matrix (a mixture of `k` overlapping Gaussian clusters):
//! - **init**: segtune's greedy k-means++ (as scikit-learn's), timed;
//! - **per iteration**: Lloyd from the same initial centres with no early
//!   stop: the time of `1 + iterations` passes minus the time of one, over
//!   `iterations` (so set-up and the final labelling cancel out);
//! - **floor**: a rayon sum over 1 GiB of f64, the machine's read
//!   bandwidth; one pass over the matrix at that bandwidth is the floor of
//!   one iteration;
//! - **f32**: the same Lloyd iterations over an f32 copy of the matrix
//!   (centroids and sums stay f64), timed the same way, with its agreement
//!   with the f64 run: the share of rows given the same segment by the two
//!   final centroid sets (both assigned in f64), the largest centroid
//!   difference and the relative inertia difference;
//! - **scikit-learn**: `kmeans_plusplus` timed the same way, and
//!   `KMeans(init=<the same centres>, n_init=1, tol=0,
//!   algorithm="lloyd")` at `max_iter` 1 and `1 + iterations`, the same
//!   difference, on the same number of threads (threadpoolctl), and the
//!   final inertia of both for agreement (scikit-learn stops early when no
//!   label changes: its iteration count is reported and used), on the f64
//!   matrix and on its f32 copy.
//!
//! Medians over `repeats`. Writes one JSON file and prints a Markdown table.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;
use segtune_models::segmentation::assign_to_centroids;
use segtune_models::segmentation::lloyd::{kmeans_plus_plus, lloyd, Element, LloydResult};

/// Bytes the floor pass reads.
const FLOOR_BYTES: usize = 1 << 30;

/// k-means per iteration against the memory floor and scikit-learn.
#[derive(Debug, clap::Parser)]
struct Args {
    /// Rows of the matrix.
    #[arg(long, default_value_t = 1_000_000)]
    rows: usize,
    /// Columns.
    #[arg(long, default_value_t = 16)]
    features: usize,
    /// Clusters.
    #[arg(long, default_value_t = 8)]
    k: usize,
    /// Lloyd iterations timed.
    #[arg(long, default_value_t = 20)]
    iterations: u64,
    /// Repeats (medians are reported).
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Threads for both (default: every core).
    #[arg(long)]
    threads: Option<usize>,
    /// A Python with scikit-learn (e.g. .venv/bin/python); none: segtune only.
    #[arg(long)]
    python: Option<PathBuf>,
    /// The JSON file written.
    #[arg(long, default_value = "bench/results/kmeans.json")]
    out: PathBuf,
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// `k` cluster centres drawn with SD 0.4 per feature, rows around them with
/// unit noise: clusters that overlap, so Lloyd keeps moving for a while.
fn mixture(rows: usize, features: usize, k: usize, seed: u64) -> Array2<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let centres = Array2::from_shape_fn((k, features), |_| {
        0.4 * rng.sample::<f64, _>(StandardNormal)
    });
    let mut x = Array2::<f64>::zeros((rows, features));
    x.axis_chunks_iter_mut(ndarray::Axis(0), 65_536)
        .into_par_iter()
        .enumerate()
        .for_each(|(chunk, mut block)| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (chunk as u64 + 1) << 20);
            for mut row in block.rows_mut() {
                let c = rng.gen_range(0..k);
                for (j, value) in row.iter_mut().enumerate() {
                    *value = centres[[c, j]] + rng.sample::<f64, _>(StandardNormal);
                }
            }
        });
    x
}

/// Seconds per Lloyd iteration from `init` (the time of `1 + iterations`
/// passes with no early stop, minus the time of one, over `iterations`), and
/// the longer run's result.
fn per_iteration<T: Element>(
    x: ndarray::ArrayView2<T>,
    init: &Array2<f64>,
    iterations: u64,
) -> (f64, LloydResult) {
    let start = Instant::now();
    std::hint::black_box(lloyd(x, init.clone(), 1, f64::NEG_INFINITY));
    let one = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let result = lloyd(x, init.clone(), 1 + iterations, f64::NEG_INFINITY);
    let many = start.elapsed().as_secs_f64();
    ((many - one) / iterations as f64, result)
}

fn write_f64(path: &Path, values: impl Iterator<Item = f64>) -> anyhow::Result<()> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    for v in values {
        file.write_all(&v.to_le_bytes())?;
    }
    file.flush()?;
    Ok(())
}

const SKLEARN: &str = r#"
import json, sys, time
import numpy as np
from threadpoolctl import threadpool_limits
import sklearn
from sklearn.cluster import KMeans, kmeans_plusplus
x_path, c_path, rows, features, k, iterations, repeats, threads = sys.argv[1:9]
rows, features, k, iterations, repeats, threads = map(int, (rows, features, k, iterations, repeats, threads))
x64 = np.fromfile(x_path, dtype="<f8").reshape(rows, features)
centres64 = np.fromfile(c_path, dtype="<f8").reshape(k, features)
out = {"version": sklearn.__version__, "threads": threads}
for name, dtype in (("f64", np.float64), ("f32", np.float32)):
    x = x64.astype(dtype)
    centres = centres64.astype(dtype)
    def fit(max_iter):
        model = KMeans(n_clusters=k, init=centres, n_init=1, max_iter=max_iter, tol=0.0, algorithm="lloyd")
        start = time.perf_counter()
        model.fit(x)
        return time.perf_counter() - start, model
    one, many, init, n_iter, inertia = [], [], [], None, None
    with threadpool_limits(limits=threads):
        fit(1)  # warm-up
        for seed in range(repeats):
            start = time.perf_counter()
            kmeans_plusplus(x, k, random_state=seed)
            init.append(time.perf_counter() - start)
            t1, _ = fit(1)
            tn, model = fit(1 + iterations)
            one.append(t1); many.append(tn)
            n_iter, inertia = int(model.n_iter_), float(model.inertia_)
    out[name] = {"one": one, "many": many, "init": init, "n_iter": n_iter, "inertia": inertia}
print(json.dumps(out))
"#;

fn main() -> anyhow::Result<()> {
    let args = <Args as clap::Parser>::parse();
    if let Some(threads) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global()?;
    }
    let threads = rayon::current_num_threads();
    eprintln!(
        "k-means bench: {} x {}, k = {}, {} iterations, {} repeats, {threads} threads",
        args.rows, args.features, args.k, args.iterations, args.repeats
    );
    let x = mixture(args.rows, args.features, args.k, 7);

    // Floor: a parallel sum over 1 GiB.
    let big: Vec<f64> = (0..FLOOR_BYTES / 8)
        .into_par_iter()
        .map(|i| i as f64)
        .collect();
    let mut floor_seconds: Vec<f64> = (0..args.repeats.max(3))
        .map(|_| {
            let start = Instant::now();
            let sum: f64 = big.par_iter().sum();
            std::hint::black_box(sum);
            start.elapsed().as_secs_f64()
        })
        .collect();
    drop(big);
    let floor_gib = median(&mut floor_seconds);
    let bandwidth = FLOOR_BYTES as f64 / floor_gib;
    let matrix_bytes = (args.rows * args.features * 8) as f64;
    let floor_pass = matrix_bytes / bandwidth;

    // Init and iterations, f64 and f32.
    let x32 = x.mapv(|v| v as f32);
    let mut init_seconds = Vec::new();
    let mut iteration_seconds = Vec::new();
    let mut iteration_seconds_32 = Vec::new();
    let mut centres = None;
    let mut results = None;
    for repeat in 0..args.repeats {
        let start = Instant::now();
        let init = kmeans_plus_plus(x.view(), args.k, &mut ChaCha8Rng::seed_from_u64(11));
        init_seconds.push(start.elapsed().as_secs_f64());
        let (seconds, result) = per_iteration(x.view(), &init, args.iterations);
        iteration_seconds.push(seconds);
        let (seconds_32, result_32) = per_iteration(x32.view(), &init, args.iterations);
        iteration_seconds_32.push(seconds_32);
        if repeat == 0 {
            centres = Some(init);
            results = Some((result, result_32));
        }
    }
    let init = median(&mut init_seconds);
    let iteration = median(&mut iteration_seconds);
    let iteration_32 = median(&mut iteration_seconds_32);
    let centres = centres.ok_or_else(|| anyhow::anyhow!("--repeats must be at least 1"))?;
    let (result, result_32) = results.ok_or_else(|| anyhow::anyhow!("no repeat"))?;
    let inertia = result.inertia;
    // The f32 run's centroids, assigned in f64, against the f64 run.
    let exact_32 = assign_to_centroids(x.view(), result_32.centroids.view());
    let inertia_32: f64 = exact_32.distances.iter().map(|d| d * d).sum();
    let same_labels = exact_32
        .labels
        .iter()
        .zip(&result.labels)
        .filter(|(a, b)| a == b)
        .count() as f64
        / args.rows as f64;
    let centroid_difference = (&result_32.centroids - &result.centroids)
        .iter()
        .fold(0.0f64, |m, v| m.max(v.abs()));

    // scikit-learn on the same matrix and centres.
    let sklearn = match &args.python {
        None => None,
        Some(python) => {
            let dir = tempfile::tempdir()?;
            let (x_path, c_path) = (dir.path().join("x.f64"), dir.path().join("c.f64"));
            write_f64(&x_path, x.iter().copied())?;
            write_f64(&c_path, centres.iter().copied())?;
            let output = Command::new(python)
                .arg("-c")
                .arg(SKLEARN)
                .arg(&x_path)
                .arg(&c_path)
                .args(
                    [
                        args.rows,
                        args.features,
                        args.k,
                        args.iterations as usize,
                        args.repeats,
                        threads,
                    ]
                    .map(|v| v.to_string()),
                )
                .env("OMP_NUM_THREADS", threads.to_string())
                .env("OPENBLAS_NUM_THREADS", threads.to_string())
                .output()?;
            anyhow::ensure!(
                output.status.success(),
                "scikit-learn failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            let value: serde_json::Value = serde_json::from_slice(&output.stdout)?;
            let summary = |value: &serde_json::Value| {
                let seconds = |key: &str| -> Vec<f64> {
                    value[key]
                        .as_array()
                        .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
                        .unwrap_or_default()
                };
                let n_iter = value["n_iter"].as_f64().unwrap_or(f64::NAN);
                let mut per_iteration: Vec<f64> = seconds("one")
                    .iter()
                    .zip(seconds("many"))
                    .map(|(one, many)| (many - one) / (n_iter - 1.0))
                    .collect();
                serde_json::json!({
                    "init_s": median(&mut seconds("init")),
                    "per_iteration_s": median(&mut per_iteration),
                    "n_iter": n_iter,
                    "inertia": value["inertia"],
                })
            };
            let mut f64_summary = summary(&value["f64"]);
            f64_summary["version"] = value["version"].clone();
            f64_summary["f32"] = summary(&value["f32"]);
            Some(f64_summary)
        }
    };

    let result = serde_json::json!({
        "rows": args.rows,
        "features": args.features,
        "k": args.k,
        "iterations": args.iterations,
        "repeats": args.repeats,
        "threads": threads,
        "floor": {
            "sum_1gib_s": floor_gib,
            "bandwidth_gb_s": bandwidth / 1e9,
            "one_pass_over_matrix_s": floor_pass,
        },
        "segtune": {
            "init_s": init,
            "per_iteration_s": iteration,
            "inertia": inertia,
            "f32": {
                "per_iteration_s": iteration_32,
                "inertia_in_f64": inertia_32,
                "relative_inertia_difference": (inertia_32 - inertia) / inertia,
                "same_segment_share": same_labels,
                "largest_centroid_difference": centroid_difference,
            },
        },
        "sklearn": sklearn,
    });
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&result)? + "\n")?;

    let ms = |s: f64| format!("{:.1} ms", s * 1e3);
    println!("| measure | value |");
    println!("| --- | --- |");
    println!(
        "| floor: one pass over the matrix ({:.1} GB/s) | {} |",
        bandwidth / 1e9,
        ms(floor_pass)
    );
    println!("| segtune k-means++ init | {} |", ms(init));
    println!(
        "| segtune per iteration | {} ({:.2} x the floor) |",
        ms(iteration),
        iteration / floor_pass
    );
    println!(
        "| segtune per iteration, f32 rows | {} ({:.2} x the f64 floor; same segment for {:.4} % of rows, inertia {:+.1e} relative, centroids within {:.1e}) |",
        ms(iteration_32),
        iteration_32 / floor_pass,
        same_labels * 100.0,
        (inertia_32 - inertia) / inertia,
        centroid_difference
    );
    if let Some(sk) = &result["sklearn"].as_object() {
        let theirs = sk["per_iteration_s"].as_f64().unwrap_or(f64::NAN);
        println!(
            "| scikit-learn {} per iteration ({} iterations) | {} |",
            sk["version"].as_str().unwrap_or("?"),
            sk["n_iter"],
            ms(theirs)
        );
        println!("| segtune / scikit-learn | {:.2} |", iteration / theirs);
        let theirs_32 = sk["f32"]["per_iteration_s"].as_f64().unwrap_or(f64::NAN);
        println!(
            "| scikit-learn per iteration, f32 ({} iterations) | {} |",
            sk["f32"]["n_iter"],
            ms(theirs_32)
        );
        println!(
            "| segtune f32 / scikit-learn f64 | {:.2} |",
            iteration_32 / theirs
        );
        println!(
            "| segtune f32 / scikit-learn f32 | {:.2} |",
            iteration_32 / theirs_32
        );
        let their_init = sk["init_s"].as_f64().unwrap_or(f64::NAN);
        println!(
            "| scikit-learn k-means++ init | {} (segtune / scikit-learn {:.2}) |",
            ms(their_init),
            init / their_init
        );
        let their_inertia = sk["inertia"].as_f64().unwrap_or(f64::NAN);
        println!(
            "| inertia, segtune vs scikit-learn | {:.6e} vs {:.6e} |",
            inertia, their_inertia
        );
    }
    eprintln!("written {}", args.out.display());
    Ok(())
}
