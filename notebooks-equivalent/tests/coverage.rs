//! The coverage check: generator seeds 0 to 39 at 20,000 partners;
//! segtune's 95 % lift intervals must cover each cell's truth (the mean true
//! effect of its treated partners) in 92 % to 97.5 % of cells. Coverage is
//! printed by partners per arm (run with --nocapture to see it).

use rayon::prelude::*;
use segtune_notebooks::coverage::{coverage_by_bucket, coverage_cells, CoverageCell};

#[test]
fn lift_intervals_cover_the_truth_in_92_to_97_5_percent_of_cells() {
    let cells: Vec<CoverageCell> = (0..40u64)
        .into_par_iter()
        .map(|seed| coverage_cells(seed, 20_000, 4).expect("a run"))
        .collect::<Vec<_>>()
        .concat();
    for outcome in ["revenue", "deal_registrations", "certifications_earned"] {
        let of: Vec<CoverageCell> = cells
            .iter()
            .filter(|c| c.outcome == outcome)
            .cloned()
            .collect();
        assert!(of.len() >= 40 * 4 * 4, "{outcome}: only {} cells", of.len());
        let covered = of.iter().filter(|c| c.covered()).count() as f64 / of.len() as f64;
        println!("{outcome}: {} cells, coverage {:.3}", of.len(), covered);
        for (bucket, n, share) in coverage_by_bucket(&of) {
            println!("  {bucket:>16} per arm: {n:>4} cells, coverage {share:.3}");
        }
        assert!(
            (0.92..=0.975).contains(&covered),
            "{outcome}: coverage {covered:.3} outside [0.92, 0.975]"
        );
    }
}
