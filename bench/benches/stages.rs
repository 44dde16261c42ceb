//! Criterion benches of segtune's stages at 10k, 100k and 1M partners.
//!
//! `cargo bench -p segtune-bench` runs them (`-- 'sweep/'` for one group);
//! CI only builds them (`cargo bench --no-run`). Data is generated once per
//! size, outside the timed code; figures go to bench/RESULTS.md with the
//! machine and command. `SEGTUNE_BENCH_SIZES=10000,100000` limits the sizes.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use segtune::features;
use segtune::ingest::ingest;
use segtune::segment::sweep_params;
use segtune_bench::{program, size_label};
use segtune_models::segmentation::selection::sweep;
use segtune_models::segmentation::SegmentationParams;

/// The sizes benched: `SEGTUNE_BENCH_SIZES`, else 10k, 100k and 1M.
fn sizes() -> Vec<usize> {
    std::env::var("SEGTUNE_BENCH_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 100_000, 1_000_000])
}

fn bench_stages(c: &mut Criterion) {
    for n in sizes() {
        let program = program(n);
        let label = size_label(n);
        let inputs = ingest(&program.settings).expect("valid inputs");
        let rows: Vec<usize> = (0..inputs.partners.ids.len()).collect();
        let x = features::build(&inputs.partners, &rows, &program.settings.features)
            .expect("features")
            .matrix;

        let mut group = c.benchmark_group("stages");
        group.sample_size(10);
        group.bench_function(
            BenchmarkId::new("ingest/partners_assignments_outcomes", &label),
            |b| b.iter(|| ingest(&program.settings).expect("valid inputs")),
        );
        group.bench_function(BenchmarkId::new("features/build", &label), |b| {
            b.iter(|| {
                features::build(&inputs.partners, &rows, &program.settings.features)
                    .expect("features")
            })
        });
        let params = SegmentationParams::new(6)
            .with_n_runs(3)
            .with_seed(0)
            .check()
            .expect("valid");
        group.bench_function(
            BenchmarkId::new(
                format!("kmeans/k6_3_restarts_{}_features", x.ncols()),
                &label,
            ),
            |b| b.iter(|| params.fit_view(x.view()).expect("fits")),
        );
        // The whole k sweep with the generated configuration's settings
        // (k 3 to 6, 3 restarts, silhouette sample, bootstrap stability).
        let sweep_params = sweep_params(&program.settings);
        group.bench_function(BenchmarkId::new("sweep/k3_to_6", &label), |b| {
            b.iter(|| sweep(x.view(), &sweep_params).expect("sweeps"))
        });
        group.bench_function(BenchmarkId::new("run/whole", &label), |b| {
            b.iter_batched(
                || tempfile::tempdir().expect("tempdir"),
                |dir| {
                    segtune::run::run(
                        &program.settings,
                        &segtune::run::RunOptions {
                            out: dir.path().join("run"),
                            force: false,
                            progress: false,
                            dump_design: None,
                            approval: None,
                        },
                    )
                    .expect("runs")
                },
                criterion::BatchSize::PerIteration,
            )
        });
        group.finish();
    }
}

criterion_group!(benches, bench_stages);
criterion_main!(benches);
