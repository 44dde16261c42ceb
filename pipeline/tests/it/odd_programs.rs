//! Issue 11: small programs of odd but well-formed data (a handful of
//! partners, duplicated rows, constant and null columns, values near the
//! ends of f64, a rule that takes some or all partners, one-hot tiers, any
//! k range, with or without a fallback k) never panic and never fail as an
//! internal error: each either runs or is refused with its documented exit
//! code (2 configuration, 3 input data, 4 no viable k), and a refused run
//! leaves no run folder.

use std::path::Path;

use proptest::prelude::*;
use segtune::config::{Overrides, RunSettings};
use segtune::exit::{classify, ExitStatus};
use segtune::run::{run, RunOptions};

use crate::common::{write_table, Col};

/// Values to draw from: repeats are likely, so are constants and nulls.
const POOL: [Option<f64>; 9] = [
    Some(0.0),
    Some(1.0),
    Some(-1.0),
    Some(0.5),
    Some(1e300),
    Some(-1e300),
    Some(1e-300),
    Some(123_456.789),
    None,
];

/// A drawn k: fixed, or a sweep from `k_min` over `span` more.
#[derive(Debug, Clone)]
enum Ks {
    Fixed(usize),
    Sweep {
        k_min: usize,
        span: usize,
        fallback: bool,
    },
}

/// An evaluated period: per partner its arm (none: not drawn), what it
/// cost, its outcome and the outcome's covariate.
type Evaluated = Vec<(Option<&'static str>, f64, Option<f64>, Option<f64>)>;

#[derive(Debug, Clone)]
struct Program {
    columns: Vec<Vec<Option<f64>>>,
    tiers: Vec<Option<&'static str>>,
    one_hot: bool,
    rule: Option<f64>,
    ks: Ks,
    evaluated: Option<Evaluated>,
    min_n_per_arm: usize,
}

fn ks() -> impl Strategy<Value = Ks> {
    prop_oneof![
        (1usize..=3).prop_map(Ks::Fixed),
        (2usize..=4, 0usize..=2, any::<bool>()).prop_map(|(k_min, span, fallback)| Ks::Sweep {
            k_min,
            span,
            fallback
        }),
    ]
}

fn programs() -> impl Strategy<Value = Program> {
    (prop_oneof![1usize..=24, 25usize..=80], 1usize..=3)
        .prop_flat_map(|(rows, n_columns)| {
            let value = || proptest::sample::select(POOL.to_vec());
            (
                proptest::collection::vec(proptest::collection::vec(value(), rows), n_columns),
                proptest::collection::vec(
                    proptest::sample::select(vec![Some("gold"), Some("silver"), None]),
                    rows,
                ),
                any::<bool>(),
                proptest::option::of(proptest::sample::select(vec![-1.0, 0.5, 2e300])),
                ks(),
                proptest::option::of(proptest::collection::vec(
                    (
                        proptest::sample::select(vec![None, Some("holdout"), Some("a"), Some("b")]),
                        proptest::sample::select(vec![0.0, 10.0, 1e12]),
                        value(),
                        value(),
                    ),
                    rows,
                )),
                2usize..=3,
            )
        })
        .prop_map(
            |(columns, tiers, one_hot, rule, ks, evaluated, min_n_per_arm)| Program {
                columns,
                tiers,
                one_hot,
                rule,
                ks,
                evaluated,
                min_n_per_arm,
            },
        )
}

fn write_program(dir: &Path, program: &Program) -> std::path::PathBuf {
    let rows = program.tiers.len();
    let ids: Vec<Option<String>> = (0..rows).map(|r| Some(format!("P{r}"))).collect();
    let mut columns = vec![Col::Strings("partner_id", ids.clone())];
    let names: Vec<&'static str> = ["f0", "f1", "f2"][..program.columns.len()].to_vec();
    for (name, values) in names.iter().zip(&program.columns) {
        columns.push(Col::Float(name, values.clone()));
    }
    columns.push(Col::Text("tier", program.tiers.clone()));
    write_table(&dir.join("partners.parquet"), columns);
    let mut config = String::from(
        "period = \"2026-Q3\"\nseed = 1\n\n[inputs]\npartners = \"partners.parquet\"\n",
    );
    if let Some(evaluated) = &program.evaluated {
        let drawn: Vec<usize> = (0..rows).filter(|r| evaluated[*r].0.is_some()).collect();
        write_table(
            &dir.join("assignments.parquet"),
            vec![
                Col::Strings(
                    "partner_id",
                    drawn.iter().map(|r| ids[*r].clone()).collect(),
                ),
                Col::Text("scheme_id", drawn.iter().map(|r| evaluated[*r].0).collect()),
                Col::Float(
                    "cost",
                    drawn.iter().map(|r| Some(evaluated[*r].1)).collect(),
                ),
            ],
        );
        write_table(
            &dir.join("outcomes.parquet"),
            vec![
                Col::Strings("partner_id", ids.clone()),
                Col::Float("y", evaluated.iter().map(|e| e.2).collect()),
                Col::Float("y_pre", evaluated.iter().map(|e| e.3).collect()),
            ],
        );
        config.push_str(
            "assignments = \"assignments.parquet\"\noutcomes = \"outcomes.parquet\"\n\n\
             [[outcome]]\nname = \"y\"\ncovariate = \"y_pre\"\n",
        );
    }
    config.push_str(&format!(
        "\n[features]\nnumeric = {names:?}\ncategorical = [\"tier\"]\nrevenue = \"f0\"\n\n\
         [tuning]\nschemes = [\"a\", \"b\"]\n\n\
         [evaluation]\nmin-n-per-arm = {}\n\n\
         [segments]\nbootstrap = 3\nbootstrap-size = 50\n",
        program.min_n_per_arm
    ));
    match program.ks {
        Ks::Fixed(k) => config.push_str(&format!("k = {k}\n")),
        Ks::Sweep {
            k_min,
            span,
            fallback,
        } => {
            config.push_str(&format!("k-min = {k_min}\nk-max = {}\n", k_min + span));
            if fallback {
                config.push_str(&format!("fallback-k = {k_min}\n"));
            }
        }
    }
    if program.one_hot {
        config.push_str("\n[features.one-hot]\ntier = 1.0\n");
    }
    if let Some(threshold) = program.rule {
        config.push_str(&format!(
            "\n[[rules]]\nname = \"low\"\nsegment-name = \"Low\"\ncondition = \"f0 < {threshold:e}\"\n"
        ));
    }
    let path = dir.join("segtune.toml");
    std::fs::write(&path, config).expect("config");
    path
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn odd_small_programs_run_or_are_refused_with_their_code(program in programs()) {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = write_program(dir.path(), &program);
        let out = dir.path().join("run");
        let outcome = std::panic::catch_unwind(|| -> anyhow::Result<()> {
            let settings = RunSettings::load(&config, &Overrides::default())?;
            run(
                &settings,
                &RunOptions {
                    out: out.clone(),
                    force: false,
                    progress: false,
                    dump_design: None,
                    approval: None,
                },
            )?;
            Ok(())
        });
        let result = outcome.map_err(|_| "panicked").expect("no panic");
        match result {
            Ok(()) => {
                // A whole run whose weights are, per segment, finite shares
                // that sum to 1.
                prop_assert!(out.join("manifest.json").is_file());
                let weights: Vec<serde_json::Value> = serde_json::from_str(
                    &std::fs::read_to_string(out.join("weights.json")).expect("weights.json"),
                )
                .expect("JSON");
                let mut sums = std::collections::BTreeMap::<u64, f64>::new();
                for row in &weights {
                    let weight = row["weight"].as_f64().expect("a number");
                    prop_assert!((0.0..=1.0).contains(&weight), "weight {weight}");
                    *sums.entry(row["segment_id"].as_u64().expect("id")).or_default() += weight;
                }
                prop_assert!(!sums.is_empty());
                for (segment, sum) in sums {
                    prop_assert!((sum - 1.0).abs() < 1e-9, "segment {segment}: weights sum to {sum}");
                }
            }
            Err(error) => {
                let status = classify(&error);
                prop_assert!(
                    matches!(status, ExitStatus::Usage | ExitStatus::InputData | ExitStatus::NoViableK),
                    "an internal error (exit 1): {error:#}"
                );
                prop_assert!(!out.exists(), "a refused run left a folder");
            }
        }
    }
}
