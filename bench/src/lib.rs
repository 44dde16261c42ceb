//! Shared set-up of segtune's benchmarks: seeded generated programs of a
//! given size, built once and outside the timed code.

#![deny(missing_docs)]

use std::path::PathBuf;

use segtune::config::{Overrides, RunSettings};
use segtune_data::generator::{generate, GeneratorParams};

/// A generated program on disk with its run configuration.
pub struct Program {
    /// Keeps the files alive.
    pub dir: tempfile::TempDir,
    /// The resolved run settings of its last period.
    pub settings: RunSettings,
}

/// Generates `partners` partners over two periods (seed 0) into a temporary folder.
pub fn program(partners: usize) -> Program {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let params = GeneratorParams::new()
        .with_partners(partners)
        .with_periods(2)
        .check()
        .expect("valid parameters");
    generate(&params, dir.path()).expect("generation");
    let config: PathBuf = dir.path().join("segtune.toml");
    let settings =
        RunSettings::load(&config, &Overrides::default()).expect("a valid configuration");
    Program { dir, settings }
}

/// "10k", "100k", "1M".
pub fn size_label(n: usize) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}
