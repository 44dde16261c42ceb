//! The short summary `segtune demo` prints for a person.

use std::fmt::Write;
use std::path::Path;

use segtune_data::generator::GeneratorValidParams;

use crate::run::RunSummary;

fn thousands(n: usize) -> String {
    grouped(n as f64)
}

/// `value` with its sign and three significant digits (`+1,234`, `+0.0312`,
/// `-12.5`): a small lift of a count does not read `+0`.
fn three_digits(value: f64) -> String {
    if value == 0.0 || !value.is_finite() {
        return format!("{value:+}");
    }
    let magnitude = value.abs().log10().floor() as i32;
    if magnitude >= 2 {
        return signed_whole(value);
    }
    let decimals = usize::try_from(2 - magnitude).unwrap_or(0);
    format!("{value:+.decimals$}")
}

/// `value` rounded, grouped and signed (`+2,529`, `-70`).
fn signed_whole(value: f64) -> String {
    let text = grouped(value);
    if text.starts_with('-') || text == "0" {
        text
    } else {
        format!("+{text}")
    }
}

/// `value` rounded to a whole number, its digits in groups of three
/// (`-387768.4` reads `-387,768`), for people.
pub fn grouped(value: f64) -> String {
    let text = format!("{value:.0}");
    let (sign, digits) = match text.strip_prefix('-') {
        Some("0") => ("", "0"),
        Some(digits) => ("-", digits),
        None => ("", text.as_str()),
    };
    let mut out = String::from(sign);
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
        "\nHighest net value per segment (lift per treated partner, 95 % interval)"
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
                    "  {:>3}  {:<17} {} {} ({} to {}), net {} per partner, {}",
                    segment.id,
                    row.scheme_id,
                    row.outcome,
                    three_digits(row.lift.unwrap_or(0.0)),
                    three_digits(row.ci_low.unwrap_or(0.0)),
                    three_digits(row.ci_high.unwrap_or(0.0)),
                    signed_whole(row.net.unwrap_or(0.0) / row.n_treated.max(1) as f64),
                    if row.significant == Some(true) {
                        "significant"
                    } else {
                        "not significant"
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

#[cfg(test)]
mod tests {
    use super::{grouped, three_digits};

    #[test]
    fn small_lifts_keep_three_significant_digits() {
        assert_eq!(three_digits(0.0), "+0");
        assert_eq!(three_digits(0.031_24), "+0.0312");
        assert_eq!(three_digits(-0.4), "-0.400");
        assert_eq!(three_digits(-12.54), "-12.5");
        assert_eq!(three_digits(1234.4), "+1,234");
        assert_eq!(three_digits(-387_768.4), "-387,768");
    }

    #[test]
    fn whole_numbers_read_in_groups_of_three() {
        assert_eq!(grouped(0.0), "0");
        assert_eq!(grouped(-0.4), "0");
        assert_eq!(grouped(999.0), "999");
        assert_eq!(grouped(1000.0), "1,000");
        assert_eq!(grouped(54577.0), "54,577");
        assert_eq!(grouped(-387768.4), "-387,768");
        assert_eq!(grouped(1234567.6), "1,234,568");
    }
}
