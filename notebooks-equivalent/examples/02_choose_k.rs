//! Walkthrough 02: how segtune chooses the number of segments, and what the
//! chosen segments look like.
//!
//! Generates a seeded program, runs segtune (which sweeps k from 3 to 6),
//! and charts each k's silhouette and stability against the gates, then the
//! chosen segments' profiles: each centroid in standard deviations from the
//! average partner, feature by feature.
//!
//! `cargo run -p segtune-notebooks --example 02_choose_k [-- --mode write|check|dry-run]`

use plotters::prelude::*;
use segtune_notebooks::{table, Mode, Page};

const PARTNERS: usize = 20_000;
const SEED: u64 = 7;

fn sweep_chart(
    rows: &[(f64, f64, f64)],
    min_stability: f64,
    chosen: f64,
) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 380)).into_drawing_area();
        root.fill(&WHITE)?;
        let (k_min, k_max) = (
            rows.first().map_or(3.0, |r| r.0),
            rows.last().map_or(6.0, |r| r.0),
        );
        let mut chart = ChartBuilder::on(&root)
            .margin(14)
            .caption("Silhouette and stability by k", ("sans-serif", 18))
            .x_label_area_size(34)
            .y_label_area_size(50)
            .build_cartesian_2d((k_min - 0.3)..(k_max + 0.3), 0.0..1.05)?;
        chart
            .configure_mesh()
            .x_labels(rows.len())
            .x_desc("k")
            .y_desc("score")
            .x_label_formatter(&|k| format!("{k:.0}"))
            .draw()?;
        let blue = RGBColor(9, 105, 218);
        let orange = RGBColor(207, 102, 0);
        chart
            .draw_series(LineSeries::new(
                rows.iter().map(|r| (r.0, r.1)),
                blue.stroke_width(2),
            ))?
            .label("silhouette")
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], blue.stroke_width(2))
            });
        chart.draw_series(
            rows.iter()
                .map(|r| Circle::new((r.0, r.1), 4, blue.filled())),
        )?;
        chart
            .draw_series(LineSeries::new(
                rows.iter().map(|r| (r.0, r.2)),
                orange.stroke_width(2),
            ))?
            .label("stability")
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], orange.stroke_width(2))
            });
        chart.draw_series(
            rows.iter()
                .map(|r| Circle::new((r.0, r.2), 4, orange.filled())),
        )?;
        chart
            .draw_series(LineSeries::new(
                vec![(k_min - 0.3, min_stability), (k_max + 0.3, min_stability)],
                BLACK.mix(0.4),
            ))?
            .label("stability gate")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK.mix(0.4)));
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(chosen, 0.0), (chosen, 1.05)],
            RGBColor(26, 127, 55).stroke_width(2),
        )))?;
        chart
            .configure_series_labels()
            .border_style(BLACK.mix(0.3))
            .background_style(WHITE)
            .position(SeriesLabelPosition::LowerRight)
            .draw()?;
        root.present()?;
    }
    Ok(svg)
}

fn profile_chart(
    features: &[String],
    segments: &[String],
    centroids: &[Vec<f64>],
) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let cell = 46u32;
        let width = 260 + cell * segments.len() as u32;
        let height = 90 + 26 * features.len() as u32;
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE)?;
        root.draw(&Text::new(
            "Segment profiles (centroid, SD from average)",
            (10, 10),
            ("sans-serif", 18),
        ))?;
        for (j, name) in segments.iter().enumerate() {
            root.draw(&Text::new(
                name.clone(),
                (250 + cell as i32 * j as i32 + 14, 44),
                ("sans-serif", 14),
            ))?;
        }
        for (i, feature) in features.iter().enumerate() {
            let y = 66 + 26 * i as i32;
            root.draw(&Text::new(
                feature.replace('_', " "),
                (10, y + 6),
                ("sans-serif", 13),
            ))?;
            for (j, centroid) in centroids.iter().enumerate() {
                let value = centroid.get(i).copied().unwrap_or(0.0);
                let strength = (value.abs() / 2.0).min(1.0);
                let shade = (255.0 * (1.0 - strength)) as u8;
                let colour = if value >= 0.0 {
                    RGBColor(shade, shade, 255)
                } else {
                    RGBColor(255, shade, shade)
                };
                let x = 250 + cell as i32 * j as i32;
                root.draw(&Rectangle::new(
                    [(x, y), (x + cell as i32 - 2, y + 24)],
                    colour.filled(),
                ))?;
                root.draw(&Text::new(
                    format!("{value:+.1}"),
                    (x + 8, y + 6),
                    ("sans-serif", 12),
                ))?;
            }
        }
        root.present()?;
    }
    Ok(svg)
}

fn main() -> anyhow::Result<()> {
    let mode = Mode::from_args()?;
    // Seeded synthetic data (the truth kept apart), and the whole pipeline
    // on the last quarter with the generated configuration.
    let segtune_notebooks::Walkthrough {
        work: _work,
        settings,
        run_dir,
        summary,
        ..
    } = segtune_notebooks::generate_and_run(PARTNERS, SEED)?;
    let manifest: serde_json::Value =
        serde_json::from_str(&fs_err::read_to_string(run_dir.join("manifest.json"))?)?;
    let model: serde_json::Value =
        serde_json::from_str(&fs_err::read_to_string(run_dir.join("model.json"))?)?;
    let selection = &manifest["quality"]["k_selection"];
    let candidates = selection["candidates"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let number = |v: &serde_json::Value, digits: usize| {
        v.as_f64()
            .map_or("–".to_string(), |v| format!("{v:.digits$}"))
    };

    let mut page = Page::default();
    let rows: Vec<(f64, f64, f64)> = candidates
        .iter()
        .map(|c| {
            (
                c["k"].as_f64().unwrap_or(0.0),
                c["silhouette"].as_f64().unwrap_or(0.0),
                c["stability"].as_f64().unwrap_or(0.0),
            )
        })
        .collect();
    let chosen = selection["chosen"].as_f64().unwrap_or(0.0);
    page.add(
        "02_choose_k/sweep.svg",
        sweep_chart(&rows, settings.segments.min_stability, chosen)?,
    );
    let features: Vec<String> = model["features"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let centroids: Vec<Vec<f64>> = model["centroids"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    r.as_array()
                        .map(|v| v.iter().filter_map(serde_json::Value::as_f64).collect())
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default();
    let segment_labels: Vec<String> = summary
        .segment_list
        .iter()
        .filter(|s| s.source == "kmeans")
        .map(|s| format!("{}", s.id))
        .collect();
    page.add(
        "02_choose_k/profiles.svg",
        profile_chart(&features, &segment_labels, &centroids)?,
    );

    let scores = table(
        &[
            "k",
            "silhouette",
            "Calinski-Harabasz",
            "Davies-Bouldin",
            "smallest segment",
            "stability",
            "gates",
        ],
        &candidates
            .iter()
            .map(|c| {
                vec![
                    c["k"].to_string(),
                    number(&c["silhouette"], 4),
                    number(&c["calinski_harabasz"], 0),
                    number(&c["davies_bouldin"], 3),
                    c["smallest_share"]
                        .as_f64()
                        .map_or("–".into(), |s| format!("{:.1} %", s * 100.0)),
                    number(&c["stability"], 3),
                    if c["passed"] == true {
                        "pass".to_string()
                    } else {
                        c["failures"]
                            .as_array()
                            .map(|f| {
                                f.iter()
                                    .filter_map(|v| v.as_str())
                                    .collect::<Vec<_>>()
                                    .join("; ")
                            })
                            .unwrap_or_default()
                    },
                ]
            })
            .collect::<Vec<_>>(),
    );
    let segments = table(
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
    let markdown = format!(
        "# 02 · Choosing k by evidence\n\n\
         *Generated by `cargo run -p segtune-notebooks --example 02_choose_k`; CI checks it is current.*\n\n\
         After the rule segments (new and dormant partners) take their members, segtune fits k-means for every k from {k_min} to {k_max} \
         on the rest of {partners} generated partners (seed {seed}) and scores each fit. \
         The rule: the best silhouette among the k whose smallest segment holds at least {share:.0} % of the partners and whose \
         stability (mean adjusted Rand index against refits on {bootstrap} bootstrap resamples) is at least {stability}.\n\n\
         **{reason}.**\n\n![Silhouette and stability by k](02_choose_k/sweep.svg)\n\n{scores}\n\
         ## The chosen segments\n\n\
         Each segment's centroid, feature by feature, in standard deviations from the average partner \
         (after the configured transforms): blue above average, red below.\n\n\
         ![Segment profiles](02_choose_k/profiles.svg)\n\n{segments}",
        k_min = settings.segments.k_min,
        k_max = settings.segments.k_max,
        partners = PARTNERS,
        seed = SEED,
        share = settings.segments.min_share * 100.0,
        bootstrap = settings.segments.bootstrap,
        stability = settings.segments.min_stability,
        reason = selection["reason"].as_str().unwrap_or(""),
    );
    page.add("02_choose_k.md", markdown);
    page.finish(mode)
}
