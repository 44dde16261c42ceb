//! The short summary `segtune demo` prints for a person.

use std::fmt::Write;
use std::path::Path;

use segtune_data::generator::GeneratorValidParams;

use crate::run::RunSummary;

fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (index, c) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Segments with sizes and names, the top lift per segment, the weights, and where the outputs are.
pub fn for_people(
    summary: &RunSummary,
    run_dir: &Path,
    params: &GeneratorValidParams,
    seconds: f64,
) -> String {
    let mut out = String::new();
    let mut segments = summary.segment_list.clone();
    segments.sort_by_key(|s| s.id);
    let _ = writeln!(
        out,
        "segtune demo: {} partners simulated over {} periods (the last two written), {} evaluated, weights proposed for {} ({seconds:.1} s)\n",
        thousands(params.n_partners),
        params.n_periods,
        summary.evaluated_period,
        summary.target_period
    );
    let _ = writeln!(out, "Segments");
    for segment in &segments {
        let _ = writeln!(
            out,
            "  {:>3}  {:>9} partners  {}",
            segment.id,
            thousands(segment.size),
            segment.name
        );
    }
    let _ = writeln!(
        out,
        "\nTop lift per segment (per treated partner, 95 % interval)"
    );
    for segment in &segments {
        let best = summary
            .lift
            .iter()
            .filter(|r| r.segment_id == segment.id && r.lift.is_some())
            .max_by(|a, b| {
                let per = |r: &crate::evaluate::LiftRow| {
                    r.net.unwrap_or(f64::NEG_INFINITY) / r.n_treated.max(1) as f64
                };
                per(a).total_cmp(&per(b))
            });
        match best {
            Some(row) => {
                let _ = writeln!(
                    out,
                    "  {:>3}  {:<17} {} {:+.0} ({:+.0} to {:+.0}), net {:+.0} per partner{}",
                    segment.id,
                    row.scheme_id,
                    row.outcome,
                    row.lift.unwrap_or(0.0),
                    row.ci_low.unwrap_or(0.0),
                    row.ci_high.unwrap_or(0.0),
                    row.net.unwrap_or(0.0) / row.n_treated.max(1) as f64,
                    if row.significant == Some(true) {
                        ", significant"
                    } else {
                        ""
                    }
                );
            }
            None => {
                let _ = writeln!(out, "  {:>3}  no estimate", segment.id);
            }
        }
    }
    let _ = writeln!(out, "\nWeights for {}", summary.target_period);
    for segment in &segments {
        let weights: Vec<String> = summary
            .weight_rows
            .iter()
            .filter(|w| w.segment_id == segment.id)
            .map(|w| format!("{} {:.2}", w.scheme_id, w.weight))
            .collect();
        let _ = writeln!(out, "  {:>3}  {}", segment.id, weights.join(", "));
    }
    let _ = writeln!(
        out,
        "\nOutputs in {}: report.html (open it in a browser), weights.parquet and weights.json, segments.parquet, \
         segment_profiles.parquet, lift.parquet, power.parquet, randomisation.parquet, posterior.json, \
         assignments_next.parquet, migration.parquet, manifest.json (run_id {}); \
         the previous quarter's run, which gave this one its segment ids and strata and proposed the draw \
         this quarter was evaluated on, is beside it in runs/. Next: segtune approve {} --by NAME, then \
         segtune publish {} --to DIR",
        run_dir.display(),
        summary.run_id,
        run_dir.display(),
        run_dir.display()
    );
    out
}
