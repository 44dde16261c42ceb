//! Helpers shared by the walkthroughs in `examples/`: each walkthrough
//! writes a Markdown page and its SVG charts under `output/`, and can check
//! that the committed page is current (`--mode check`), so the pages in the
//! repository always show what the code does today.

#![deny(missing_docs)]

pub mod coverage;

use std::path::{Path, PathBuf};

/// What a walkthrough does with its page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Write the page and charts.
    Write,
    /// Compare with the committed files; fail when they differ.
    Check,
    /// Print the page, write nothing.
    DryRun,
}

impl Mode {
    /// From `--mode write|check|dry-run` (default `write`).
    pub fn from_args() -> anyhow::Result<Self> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        match args
            .iter()
            .position(|a| a == "--mode")
            .and_then(|i| args.get(i + 1))
            .map(String::as_str)
        {
            None | Some("write") => Ok(Mode::Write),
            Some("check") => Ok(Mode::Check),
            Some("dry-run") => Ok(Mode::DryRun),
            Some(other) => anyhow::bail!("unknown mode `{other}`: use write, check or dry-run"),
        }
    }
}

/// The folder of committed walkthrough output.
pub fn output_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("output")
}

/// A page and its charts, written or checked as one.
#[derive(Debug, Default)]
pub struct Page {
    files: Vec<(PathBuf, String)>,
}

impl Page {
    /// Adds a file (path relative to the output folder).
    pub fn add(&mut self, relative: impl Into<PathBuf>, contents: String) {
        self.files.push((relative.into(), contents));
    }

    /// Writes, checks or prints every file.
    pub fn finish(self, mode: Mode) -> anyhow::Result<()> {
        let root = output_dir();
        let mut stale = Vec::new();
        for (relative, contents) in &self.files {
            let path = root.join(relative);
            match mode {
                Mode::Write => {
                    if let Some(parent) = path.parent() {
                        fs_err::create_dir_all(parent)?;
                    }
                    fs_err::write(&path, contents)?;
                    println!("wrote {}", path.display());
                }
                Mode::Check => {
                    if std::fs::read_to_string(&path).ok().as_deref() != Some(contents.as_str()) {
                        stale.push(relative.display().to_string());
                    }
                }
                Mode::DryRun => println!("--- {}\n{contents}", relative.display()),
            }
        }
        if !stale.is_empty() {
            anyhow::bail!(
                "walkthrough output is not current: {} (run `cargo run -p segtune-notebooks --example <name>` and commit)",
                stale.join(", ")
            );
        }
        if mode == Mode::Check {
            println!("walkthrough output is current ({} files)", self.files.len());
        }
        Ok(())
    }
}

/// A generated program and segtune's run on its last period.
pub struct Walkthrough {
    /// Keeps the files alive.
    pub work: tempfile::TempDir,
    /// The generated data.
    pub data: PathBuf,
    /// The generator's parameters.
    pub params: segtune_data::generator::GeneratorValidParams,
    /// The run's settings (the generated configuration).
    pub settings: segtune::config::RunSettings,
    /// The run folder.
    pub run_dir: PathBuf,
    /// What the run did.
    pub summary: segtune::run::RunSummary,
}

/// Generates `partners` partners (seed `seed`, default periods) and runs
/// segtune on the last period with the generated configuration.
pub fn generate_and_run(partners: usize, seed: u64) -> anyhow::Result<Walkthrough> {
    let params = segtune_data::generator::GeneratorParams::new()
        .with_partners(partners)
        .with_seed(seed)
        .check()?;
    run_generated(params, "")
}

/// Generates a program with `params` and runs segtune on its last period
/// with the generated configuration plus `extra_config` (TOML appended, e.g.
/// a fixed k).
pub fn run_generated(
    params: segtune_data::generator::GeneratorValidParams,
    extra_config: &str,
) -> anyhow::Result<Walkthrough> {
    let work = tempfile::tempdir()?;
    let data = work.path().join("data");
    fs_err::create_dir(&data)?;
    segtune_data::generator::generate(&params, &data)?;
    let config = fs_err::read_to_string(data.join("segtune.toml"))?;
    fs_err::write(
        data.join("walkthrough.toml"),
        format!("{config}\n{extra_config}"),
    )?;
    let settings = segtune::config::RunSettings::load(
        &data.join("walkthrough.toml"),
        &segtune::config::Overrides::default(),
    )?;
    let run_dir = work.path().join("run");
    let summary = segtune::run::run(
        &settings,
        &segtune::run::RunOptions {
            out: run_dir.clone(),
            force: false,
            progress: false,
            dump_design: None,
            approval: None,
        },
    )?;
    Ok(Walkthrough {
        work,
        data,
        params,
        settings,
        run_dir,
        summary,
    })
}

/// An integer with thousands separators: `-1,234,567`.
pub fn grouped(value: f64) -> String {
    let rounded = value.round();
    let digits = format!("{:.0}", rounded.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if rounded < 0.0 {
        format!("-{out}")
    } else {
        out
    }
}

/// Every record batch of a Parquet file or of a folder of part files.
pub fn batches(path: &Path) -> anyhow::Result<Vec<arrow_array::RecordBatch>> {
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut parts: Vec<PathBuf> = fs_err::read_dir(path)?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
            .collect();
        parts.sort();
        parts
    } else {
        vec![path.to_path_buf()]
    };
    let mut out = Vec::new();
    for file in files {
        let handle = fs_err::File::open(&file)?;
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            handle.into_parts().0,
        )?
        .build()?;
        for batch in reader {
            out.push(batch?);
        }
    }
    Ok(out)
}

/// A Markdown table.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!(
        "| {} |\n|{}|\n",
        header.join(" | "),
        header.iter().map(|_| " --- ").collect::<Vec<_>>().join("|")
    );
    for row in rows {
        out.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    out
}
