//! The frozen, realistic defaults (data/README.md). Later work may not
//! loosen these bounds: they keep the generator from becoming easy.

use std::collections::BTreeMap;

use segtune_data::generator::{generate, truth_table, Archetype, GeneratorParams};

use crate::common::run_peer;

#[test]
fn true_lifts_are_small_close_and_sometimes_useless() {
    let params = GeneratorParams::new().check().expect("defaults are valid");
    let cells = truth_table(&params);
    for period in &params.periods {
        let cells: Vec<_> = cells.iter().filter(|c| &c.period == period).collect();
        assert_eq!(cells.len(), 30);
        for cell in &cells {
            assert!(
                (-0.02..=0.10).contains(&cell.lift_sd),
                "{period} {} {}: lift {} SD is outside [-0.02, 0.10]",
                cell.archetype,
                cell.scheme_id,
                cell.lift_sd
            );
        }
        let mut by_archetype: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        for cell in &cells {
            by_archetype
                .entry(cell.archetype)
                .or_default()
                .push(cell.net_sd);
        }
        let close = by_archetype
            .values()
            .filter(|nets| {
                let mut sorted = (*nets).clone();
                sorted.sort_by(|a, b| b.total_cmp(a));
                sorted[0] - sorted[1] <= 0.03
            })
            .count();
        assert!(
            close >= 3,
            "{period}: only {close} archetypes have a close runner-up"
        );
        assert!(
            cells.iter().any(|c| c.true_lift == 0.0),
            "{period}: no zero-lift cell"
        );
        assert!(
            cells.iter().any(|c| c.true_net < 0.0),
            "{period}: no cell with negative net value"
        );
    }
}

#[test]
fn archetypes_overlap_but_are_findable_by_scikit_learn() {
    let params = GeneratorParams::new().check().expect("defaults are valid");
    let dir = tempfile::tempdir().expect("tempdir");
    generate(&params, dir.path()).expect("generates");
    let root = dir.path().to_string_lossy().into_owned();
    for period in &params.periods {
        let (ok, output) = run_peer("data/tests/peer/frozen_defaults.py", &[&root, period]);
        assert!(
            ok,
            "{period}: scikit-learn's ARI against the archetypes must be in [0.70, 0.95]: {output}"
        );
    }
}

#[test]
fn every_archetype_is_in_every_periods_draw() {
    let params = GeneratorParams::new()
        .with_partners(20_000)
        .check()
        .expect("valid");
    let cells = truth_table(&params);
    for period in &params.periods {
        for archetype in Archetype::ALL {
            let n = cells
                .iter()
                .find(|c| &c.period == period && c.archetype == archetype.name())
                .map_or(0, |c| c.n_partners);
            assert!(
                n as f64 >= 0.02 * 20_000.0,
                "{period}: only {n} {} partners in the draw",
                archetype.name()
            );
        }
    }
}
