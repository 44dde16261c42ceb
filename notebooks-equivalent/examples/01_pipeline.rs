//! Walkthrough 01: generate a synthetic channel program, run the whole
//! pipeline on it, and look at what an analyst looks at first: who the
//! segments are (against the generator's hidden archetypes), what each scheme
//! did in each segment, and the weights proposed for the next quarter.
//!
//! `cargo run -p segtune-notebooks --example 01_pipeline [-- --mode write|check|dry-run]`
//! writes `notebooks-equivalent/output/01_pipeline.md` and its charts.

use std::collections::{BTreeMap, HashMap};

use arrow_array::cast::AsArray;
use segtune_notebooks::{table, Mode, Page};

const PARTNERS: usize = 20_000;
const SEED: u64 = 7;

fn column(path: &std::path::Path, name: &str) -> anyhow::Result<Vec<String>> {
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(path)?,
    )?
    .build()?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch?;
        let array = batch
            .column_by_name(name)
            .ok_or_else(|| anyhow::anyhow!("no column {name}"))?;
        if let Some(strings) = array.as_string_opt::<i32>() {
            out.extend(strings.iter().map(|v| v.unwrap_or_default().to_string()));
        } else if let Some(ids) = array.as_primitive_opt::<arrow_array::types::UInt32Type>() {
            out.extend(
                ids.iter()
                    .map(|v| v.map(|v| v.to_string()).unwrap_or_default()),
            );
        }
    }
    Ok(out)
}

fn main() -> anyhow::Result<()> {
    let mode = Mode::from_args()?;
    // 1. Seeded synthetic data: four quarters, with the truth kept apart.
    // Seeded synthetic data (the truth kept apart), and the whole pipeline
    // on the last quarter with the generated configuration.
    let segtune_notebooks::Walkthrough {
        work: _work,
        data,
        params,
        settings,
        run_dir,
        summary,
    } = segtune_notebooks::generate_and_run(PARTNERS, SEED)?;

    // 3. Segments against the hidden archetypes.
    let period = &settings.period;
    let segment_of: HashMap<String, String> =
        column(&run_dir.join("segments.parquet"), "partner_id")?
            .into_iter()
            .zip(column(&run_dir.join("segments.parquet"), "segment_id")?)
            .collect();
    let archetypes = data.join(format!("truth/{period}/archetypes.parquet"));
    let mut crosstab: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for (partner, archetype) in column(&archetypes, "partner_id")?
        .into_iter()
        .zip(column(&archetypes, "archetype")?)
    {
        *crosstab
            .entry(archetype)
            .or_default()
            .entry(segment_of[&partner].clone())
            .or_default() += 1;
    }
    let segment_ids: Vec<String> = summary
        .segment_list
        .iter()
        .map(|s| s.id.to_string())
        .collect();
    let mut header = vec!["archetype (truth)"];
    header.extend(segment_ids.iter().map(String::as_str));
    let crosstab_rows: Vec<Vec<String>> = crosstab
        .iter()
        .map(|(archetype, counts)| {
            let mut row = vec![archetype.replace('_', " ")];
            row.extend(
                segment_ids
                    .iter()
                    .map(|id| counts.get(id).copied().unwrap_or(0).to_string()),
            );
            row
        })
        .collect();

    let mut page = Page::default();
    let sizes: Vec<(String, usize)> = summary
        .segment_list
        .iter()
        .map(|s| (s.name.clone(), s.size))
        .collect();
    page.add(
        "01_pipeline/segment_sizes.svg",
        segtune::report::segment_size_chart(&sizes)?,
    );
    // The report's own forest plot: the revenue lift of each cell as a share
    // of its holdout mean, so segments of very different size share an axis.
    let forest = segtune::report::forest_plot(&summary.lift, "revenue")?
        .ok_or_else(|| anyhow::anyhow!("no revenue lift to plot"))?;
    page.add("01_pipeline/lift_forest.svg", forest);

    let segments_table = table(
        &["id", "name", "partners", "why this name"],
        &summary
            .segment_list
            .iter()
            .map(|s| {
                vec![
                    s.id.to_string(),
                    s.name.clone(),
                    s.size.to_string(),
                    s.name_reason.clone(),
                ]
            })
            .collect::<Vec<_>>(),
    );
    let lift_table = table(
        &[
            "segment",
            "scheme",
            "treated",
            "holdout",
            "lift",
            "95 % interval",
            "net per partner",
            "q",
            "method",
        ],
        &summary
            .lift
            .iter()
            .map(|r| {
                let fmt = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.0}"));
                vec![
                    r.segment_id.to_string(),
                    r.scheme_id.clone(),
                    r.n_treated.to_string(),
                    r.n_holdout.to_string(),
                    fmt(r.lift),
                    format!("{} to {}", fmt(r.ci_low), fmt(r.ci_high)),
                    fmt(r.net.map(|n| n / r.n_treated.max(1) as f64)),
                    r.q_value.map_or("–".into(), |q| format!("{q:.3}")),
                    r.method.clone(),
                ]
            })
            .collect::<Vec<_>>(),
    );
    let weights_table = table(
        &["segment", "scheme", "weight", "reason"],
        &summary
            .weight_rows
            .iter()
            .map(|w| {
                vec![
                    w.segment_id.to_string(),
                    w.scheme_id.clone(),
                    format!("{:.3}", w.weight),
                    w.reason.clone(),
                ]
            })
            .collect::<Vec<_>>(),
    );
    let markdown = format!(
        "# 01 · From generated data to proposed weights\n\n\
         *Generated by `cargo run -p segtune-notebooks --example 01_pipeline`; CI checks it is current.*\n\n\
         The generator simulated {partners} partners over {periods} quarters (seed {seed}), with six hidden archetypes. \
         segtune evaluated {period} and proposed weights for {target} (run `{run_id}`, k = {k}).\n\n\
         ## Segments\n\n![Partners per segment](01_pipeline/segment_sizes.svg)\n\n{segments_table}\n\
         ## Segments against the hidden archetypes\n\n\
         How the generator's archetypes (which segtune never sees) spread over the segments. \
         New and dormant partners are caught by the configuration's rules before clustering; k-means segments the rest.\n\n{crosstab}\n\
         ## What each scheme did\n\n\
         The revenue lift of each scheme's partners over the holdout of the same segment, adjusted for each partner's revenue \
         in the quarter before (Lin's regression, HC2 errors), with 95 % intervals; the chart shows it as a share of the \
         holdout's mean revenue, blue where the false-discovery-adjusted q-value is at most 0.10. \
         Walkthrough 03 shows why these intervals can be trusted.\n\n\
         ![Lift forest plot](01_pipeline/lift_forest.svg)\n\n{lift_table}\n\
         ## Weights proposed for {target}\n\n{weights_table}",
        partners = PARTNERS,
        periods = params.n_periods,
        seed = SEED,
        period = period,
        target = settings.target_period,
        run_id = summary.run_id,
        k = summary.segments,
        crosstab = table(&header, &crosstab_rows),
    );
    page.add("01_pipeline.md", markdown);
    page.finish(mode)
}
