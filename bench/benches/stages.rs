//! Criterion benches of segtune's stages at several sizes.
//!
//! `cargo bench -p segtune-bench` runs them; CI only builds them
//! (`cargo bench --no-run`). Data is generated once per size, outside the
//! timed code; figures go to bench/RESULTS.md with the machine and command.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use segtune::features;
use segtune::ingest::ingest;
use segtune_bench::{program, size_label};
use segtune_models::segmentation::SegmentationParams;

const SIZES: [usize; 2] = [10_000, 100_000];

fn bench_ingest(c: &mut Criterion) {
    let mut group = c.benchmark_group("ingest/partners_assignments_outcomes");
    group.sample_size(10);
    for n in SIZES {
        let program = program(n);
        group.bench_with_input(
            BenchmarkId::from_parameter(size_label(n)),
            &program,
            |b, program| b.iter(|| ingest(&program.settings).expect("valid inputs")),
        );
    }
    group.finish();
}

fn bench_kmeans(c: &mut Criterion) {
    let mut group = c.benchmark_group("segment/kmeans");
    group.sample_size(10);
    for n in SIZES {
        let program = program(n);
        let inputs = ingest(&program.settings).expect("valid inputs");
        let matrix = features::build(
            &inputs.partners,
            &(0..inputs.partners.ids.len()).collect::<Vec<_>>(),
            &program.settings.features,
        )
        .expect("features")
        .matrix;
        let params = SegmentationParams::new(6)
            .with_n_runs(3)
            .with_seed(0)
            .check()
            .expect("valid");
        let id = format!("{}_x_{}_k6", size_label(n), matrix.ncols());
        group.bench_with_input(BenchmarkId::from_parameter(id), &matrix, |b, matrix| {
            b.iter(|| params.fit_view(matrix.view()).expect("fits"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_ingest, bench_kmeans);
criterion_main!(benches);
