//! Entry points for fuzzing: `fuzz/` drives them with cargo fuzz, and a
//! stable test replays the committed corpus through them on every CI run.
//! Each takes arbitrary bytes and must return, whatever they are: an error
//! is the expected answer to most inputs; a panic, an abort or a hang is a
//! finding.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::{FeatureSettings, LimitSettings, Overrides as InputOverrides, RunSettings};
use crate::ids::PartnerIds;
use crate::ingest::{read_partners, CategoricalColumn, NumericColumn, PartnersTable};
use crate::overrides::Overrides;
use crate::rules::{apply, Rule};

/// A configuration file's text (TOML parsing, then every check).
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = RunSettings::from_source(Path::new("fuzz.toml"), text, &InputOverrides::default());
    }
}

/// A rule's condition: parsed, checked, and (when valid) evaluated on a
/// small partners table with a null, a zero and a text column.
pub fn rule(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(rule) = Rule::parse("fuzz", "Fuzz", text) {
        let _ = rule.columns();
        let _ = apply(&[rule], &small_partners());
    }
}

/// An overrides file's text.
pub fn overrides(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Overrides::parse(Path::new("overrides.toml"), text);
    }
}

/// Arbitrary bytes as the partners table's one Parquet file, read with the
/// default limits and every numeric column taken as a feature.
pub fn parquet(data: &[u8]) {
    if let Some(path) = temporary_file(data) {
        let features = FeatureSettings {
            revenue: "revenue".into(),
            ..FeatureSettings::default()
        };
        let mut problems = Vec::new();
        let _ = read_partners(&path, &features, &LimitSettings::default(), &mut problems);
        let _ = std::fs::remove_file(&path);
    }
}

/// Arbitrary bytes as the assignments and as the outcomes (`revenue`,
/// `revenue_pre`) of the three partners `a`, `b` and `c`, with every check
/// of those tables.
pub fn tables(data: &[u8]) {
    let path = temporary_file(data);
    if let Some(path) = &path {
        let outcomes = ["revenue".to_string(), "revenue_pre".to_string()];
        let _ = crate::ingest::check_related_tables(
            path,
            &small_partners().ids,
            &outcomes,
            &LimitSettings::default(),
        );
        let _ = std::fs::remove_file(path);
    }
}

/// `data` in a new temporary file (its path), unique to this process and call.
fn temporary_file(data: &[u8]) -> Option<PathBuf> {
    static FILES: AtomicU64 = AtomicU64::new(0);
    let path: PathBuf = std::env::temp_dir().join(format!(
        "segtune-fuzz-{}-{}.parquet",
        std::process::id(),
        FILES.fetch_add(1, Ordering::Relaxed)
    ));
    match std::fs::write(&path, data) {
        Ok(()) => Some(path),
        Err(_) => {
            let _ = std::fs::remove_file(&path);
            None
        }
    }
}

/// Three partners: revenue with a null, tenure with a zero, a tier text.
fn small_partners() -> PartnersTable {
    PartnersTable {
        ids: ["a", "b", "c"].into_iter().collect::<PartnerIds>(),
        numeric: vec![
            NumericColumn {
                name: "revenue".into(),
                values: vec![100.0, f64::NAN, -3.5],
            },
            NumericColumn {
                name: "tenure_months".into(),
                values: vec![0.0, 12.0, 240.0],
            },
        ],
        revenue: NumericColumn {
            name: "revenue".into(),
            values: vec![100.0, f64::NAN, -3.5],
        },
        categorical: vec![CategoricalColumn {
            name: "tier".into(),
            codes: vec![Some(0), None, Some(1)],
            levels: vec!["gold".into(), "silver".into()],
        }],
        files: Vec::new(),
    }
}
