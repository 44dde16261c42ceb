//! The committed fuzz corpus (fuzz/corpus/TARGET/, every input cargo fuzz
//! kept for new coverage; fuzz/regressions/TARGET/, inputs that once
//! crashed or were slow; fuzz/seeds/TARGET/, hand-made starting inputs)
//! replayed through the same entry points the fuzzers drive:
//! none may panic. See fuzz/README.md for the fuzzing runs themselves.

use std::path::PathBuf;

fn inputs(target: &str) -> Vec<PathBuf> {
    let fuzz = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut files: Vec<PathBuf> = ["corpus", "regressions", "seeds"]
        .iter()
        .map(|kind| fuzz.join(kind).join(target))
        .filter(|dir| dir.is_dir())
        .flat_map(|dir| std::fs::read_dir(dir).expect("corpus folder"))
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

/// Replays every input of `target`; `at_least`: about the committed
/// corpus's size, so that losing most of it fails.
fn replay(target: &str, entry: fn(&[u8]), at_least: usize) {
    let files = inputs(target);
    assert!(
        files.len() >= at_least,
        "{} inputs for `{target}`, expected at least {at_least}",
        files.len()
    );
    for file in files {
        let data = std::fs::read(&file).expect("input");
        let result = std::panic::catch_unwind(|| entry(&data));
        assert!(result.is_ok(), "`{}` panicked", file.display());
    }
}

#[test]
fn the_config_corpus_replays_without_a_panic() {
    replay("config", segtune::fuzz::config, 1900);
}

#[test]
fn the_rule_corpus_replays_without_a_panic() {
    replay("rule", segtune::fuzz::rule, 2300);
}

#[test]
fn the_overrides_corpus_replays_without_a_panic() {
    replay("overrides", segtune::fuzz::overrides, 1700);
}

#[test]
fn the_parquet_corpus_replays_without_a_panic() {
    replay("parquet", segtune::fuzz::parquet, 1260);
}

#[test]
fn the_tables_corpus_replays_without_a_panic() {
    replay("tables", segtune::fuzz::tables, 1400);
}

#[test]
fn the_tables_entry_reaches_the_assignments_and_outcomes_checks() {
    // The seeds of the `tables` fuzzer: what the entry reads them as must
    // be refused for the right reasons, so the fuzzer explores the checks.
    let seed = |name: &str| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../fuzz/seeds/tables/{name}"))
    };
    let ids: segtune::ids::PartnerIds = ["a", "b", "c"].into_iter().collect();
    let outcomes = ["revenue".to_string(), "revenue_pre".to_string()];
    let problems = |name: &str| -> String {
        segtune::ingest::check_related_tables(
            &seed(name),
            &ids,
            &outcomes,
            &segtune::config::LimitSettings::default(),
        )
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
    };
    let bad = problems("assign_bad.parquet");
    crate::common::assert_mentions(
        &bad,
        &["negative cost", "scheme_id is null", "column `revenue`"],
    );
    let odd = problems("outcomes_odd.parquet");
    crate::common::assert_mentions(&odd, &["partner_id `z`", "column `scheme_id`"]);
}
