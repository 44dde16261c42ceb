//! The `segtune` command line: parse, run, map the outcome to an exit code.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use segtune::config::{ConfigError, Overrides, RawConfig, RunSettings};
use segtune::exit::{classify, ExitStatus, UsageError};
use segtune::ingest::{ingest, IngestError};
use segtune::output::StagedDir;
use segtune_data::generator::{self, GeneratorParams};

/// Segment channel partners, measure incentive lift, tune each segment's incentive mix.
///
/// segtune is a scheduled batch job: it reads partner features, assignments and
/// outcomes from Parquet, and writes segments, lift, tuned weights, a manifest
/// and a report into one run folder. Logs go to stderr; stdout carries only data.
#[derive(Debug, Parser)]
#[command(name = "segtune", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format on stderr: `text` for people, `json` for schedulers.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "SEGTUNE_LOG_FORMAT")]
    log_format: LogFormat,
    /// More logs (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    quiet: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a synthetic channel program with known ground truth.
    ///
    /// Writes, per period, partners, assignments and outcomes under
    /// `periods/<period>/`, the truth (archetypes, true effects, true lift and
    /// cost) under `truth/`, and a ready run configuration `segtune.toml` for
    /// the last period. Large tables are written as folders of part files.
    Generate(GenerateArgs),
    /// Generate synthetic data and run the whole pipeline on it, in one go.
    ///
    /// Writes the generated data to `DIR/data` and the run folder to
    /// `DIR/run`, then prints a short summary: segments with sizes and names,
    /// the top lift per segment, the weights, and where the outputs are.
    Demo(DemoArgs),
    /// Run the pipeline: segments, lift, weights, the next draw, manifest and report.
    ///
    /// Writes one run folder (default `runs/<period>` beside the
    /// configuration) that appears complete or not at all, and prints one JSON
    /// line with the run folder, run_id, periods and counts on stdout.
    Run(RunArgs),
    /// Put partners into an existing run's segments, without re-clustering.
    ///
    /// Applies the run's rules, then its saved feature transform and
    /// centroids; writes one row per partner with the columns of
    /// segments.parquet.
    Assign(AssignArgs),
    /// Check a configuration and its input data; writes nothing.
    ///
    /// Reports every problem found: configuration problems (exit 2) and data
    /// problems (exit 3), each naming the file, the column and the row or partner.
    Validate(ValidateArgs),
    /// Closed-loop simulation: segtune against a uniform program and an oracle.
    ///
    /// For each seed, a generated program runs period after period, each
    /// period's outcomes computed for the draw segtune proposed the period
    /// before. Writes simulation.json (per seed, period and policy: expected
    /// incremental revenue, cost, net, ROI; the share of the oracle's gain
    /// segtune captured) and simulation.svg, and prints one JSON line.
    Simulate(SimulateArgs),
    /// Approve a proposed run: records who approved it and when in the manifest.
    ///
    /// The proposed weights are kept as weights_proposed.parquet beside the
    /// approved ones. Only an approved run can be published.
    Approve(ApproveArgs),
    /// Publish an approved run's weights for downstream systems.
    ///
    /// Writes DIR/history/<target_period>/<run_id>/ (weights.parquet,
    /// weights.json, weights.schema.json) whole, then switches the DIR/latest
    /// link atomically. Republishing changes nothing; an older target period
    /// than latest needs --rollback; concurrent publishes wait for a lock.
    Publish(PublishArgs),
    /// Re-render a run's report.html (with its current status and approval).
    Report(ReportArgs),
}

#[derive(Debug, Args)]
struct GenerateArgs {
    /// Output folder (must not exist, or be empty, unless --force).
    #[arg(long, env = "SEGTUNE_OUT")]
    out: PathBuf,
    /// Partners per period.
    #[arg(long, default_value_t = generator::DEFAULT_PARTNERS)]
    partners: usize,
    /// Number of periods.
    #[arg(long, default_value_t = generator::DEFAULT_PERIODS)]
    periods: usize,
    /// Seed of every random draw.
    #[arg(long, default_value_t = generator::DEFAULT_SEED)]
    seed: u64,
    /// First period (YYYY-Qn or YYYY-MM).
    #[arg(long, default_value = generator::DEFAULT_START_PERIOD)]
    start_period: String,
    /// Share of established partners changing archetype per period.
    #[arg(long, default_value_t = generator::DEFAULT_DRIFT)]
    drift: f64,
    /// Holdout share of the generator's own assignment draw.
    #[arg(long, default_value_t = generator::DEFAULT_HOLDOUT_SHARE)]
    holdout_share: f64,
    /// Partners per part file; more partners than this give part-file folders.
    #[arg(long, default_value_t = generator::DEFAULT_PART_ROWS)]
    part_rows: usize,
    /// An assignments file (partner_id, scheme_id) that replaces the
    /// generator's own draw in `--period`: outcomes and truth of that period
    /// are computed for it (a closed loop feeds segtune's
    /// assignments_next.parquet back here).
    #[arg(long, requires = "period")]
    assignments: Option<PathBuf>,
    /// The period whose draw `--assignments` replaces.
    #[arg(long, requires = "assignments")]
    period: Option<String>,
    /// Replace an existing output folder.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Output folder.
    #[arg(long, env = "SEGTUNE_OUT", default_value = "segtune-demo")]
    out: PathBuf,
    /// Partners in the generated program.
    #[arg(long, default_value_t = generator::DEFAULT_PARTNERS)]
    partners: usize,
    /// Seed of the generator and the run.
    #[arg(long, default_value_t = generator::DEFAULT_SEED)]
    seed: u64,
    /// Replace an existing folder that is not an earlier demo.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
struct ApproveArgs {
    /// The run folder.
    run: PathBuf,
    /// Who approves (recorded in the manifest).
    #[arg(long)]
    by: String,
    /// Ops' overrides (TOML): rename segments, pin partners to a segment,
    /// pin, cap or switch off a scheme in a segment. The run is re-done on
    /// its own inputs with them applied; an invalid one changes nothing.
    #[arg(long)]
    overrides: Option<PathBuf>,
    /// Hide progress bars.
    #[arg(long)]
    no_progress: bool,
}

#[derive(Debug, Args)]
struct ReportArgs {
    /// The run folder.
    run: PathBuf,
}

#[derive(Debug, Args)]
struct PublishArgs {
    /// The (approved) run folder.
    run: PathBuf,
    /// The publish folder downstream systems read (`latest/` inside it).
    #[arg(long, env = "SEGTUNE_PUBLISH_TO")]
    to: PathBuf,
    /// Allow publishing an older target period than `latest`.
    #[arg(long)]
    rollback: bool,
}

#[derive(Debug, Args)]
struct SimulateArgs {
    /// Periods per program.
    #[arg(long, default_value_t = 8)]
    periods: usize,
    /// Partners per program.
    #[arg(long, default_value_t = generator::DEFAULT_PARTNERS)]
    partners: usize,
    /// Number of seeds (0 .. S).
    #[arg(long, default_value_t = 10)]
    seeds: u64,
    /// The first period (1-based) of the headline sum.
    #[arg(long, default_value_t = 4)]
    from_period: usize,
    /// Output folder (kept: each seed's run folders, the results).
    #[arg(long, env = "SEGTUNE_OUT", default_value = "segtune-simulation")]
    out: PathBuf,
    /// From this period (1-based) on, the deal-registration SPIFF loses its
    /// revenue lift for growth partners; the output then says whether
    /// segtune cut its weight within two periods.
    #[arg(long)]
    shock_period: Option<usize>,
    /// TOML appended to each period's generated configuration (e.g.
    /// "[tuning]\nforgetting = 0.5"), to simulate other settings.
    #[arg(long, default_value = "")]
    extra_config: String,
    /// Replace an existing output folder.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The run configuration (TOML).
    #[arg(long, env = "SEGTUNE_CONFIG")]
    config: PathBuf,
    /// The run folder (default: `runs/<period>` beside the configuration).
    #[arg(long, env = "SEGTUNE_OUT")]
    out: Option<PathBuf>,
    /// Replace an existing run folder.
    #[arg(long)]
    force: bool,
    /// Hide progress bars.
    #[arg(long)]
    no_progress: bool,
    /// Debug: write every estimated lift cell's regression design (outcome,
    /// segment_id, scheme_id, y and the design's columns) to DIR/design.parquet,
    /// to refit it elsewhere.
    #[arg(long, value_name = "DIR")]
    dump_design: Option<PathBuf>,
    #[command(flatten)]
    inputs: InputOverrides,
}

#[derive(Debug, Args)]
struct AssignArgs {
    /// The run folder whose segments to use.
    #[arg(long, env = "SEGTUNE_RUN")]
    run: PathBuf,
    /// The partners to assign (a Parquet file or a folder of part files).
    #[arg(long, env = "SEGTUNE_PARTNERS")]
    partners: PathBuf,
    /// The Parquet file to write.
    #[arg(long)]
    out: PathBuf,
    /// Replace an existing output file.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
struct ValidateArgs {
    /// The run configuration (TOML).
    #[arg(long, env = "SEGTUNE_CONFIG")]
    config: PathBuf,
    #[command(flatten)]
    inputs: InputOverrides,
}

/// Input paths that replace the configuration's (command line > environment > file).
#[derive(Debug, Args)]
struct InputOverrides {
    /// The evaluated period, over the file's `period` (the target period is
    /// then the next one): one configuration serves every quarter.
    #[arg(long, env = "SEGTUNE_PERIOD")]
    period: Option<String>,
    /// The target period, over the file's `target-period` (needed with a
    /// `--period` label that is neither YYYY-Qn nor YYYY-MM).
    #[arg(long, env = "SEGTUNE_TARGET_PERIOD")]
    target_period: Option<String>,
    /// Partners table (file or folder of part files).
    #[arg(long, env = "SEGTUNE_PARTNERS")]
    partners: Option<PathBuf>,
    /// Assignments of the evaluated period.
    #[arg(long, env = "SEGTUNE_ASSIGNMENTS")]
    assignments: Option<PathBuf>,
    /// Outcomes of the evaluated period.
    #[arg(long, env = "SEGTUNE_OUTCOMES")]
    outcomes: Option<PathBuf>,
    /// The previous run's folder.
    #[arg(long, env = "SEGTUNE_PREVIOUS_RUN")]
    previous_run: Option<PathBuf>,
}

impl InputOverrides {
    fn to_overrides(&self) -> Overrides {
        Overrides {
            period: self.period.clone(),
            target_period: self.target_period.clone(),
            partners: self.partners.clone(),
            assignments: self.assignments.clone(),
            outcomes: self.outcomes.clone(),
            previous_run: self.previous_run.clone(),
            seed: None,
        }
    }
}

fn init_logging(cli: &Cli) {
    let default = if cli.quiet {
        "error"
    } else {
        match cli.verbose {
            0 => "info",
            1 => "debug",
            _ => "trace",
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(segtune::progress::LogWriter)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none());
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn generate(args: &GenerateArgs) -> anyhow::Result<()> {
    let params = GeneratorParams::new()
        .with_partners(args.partners)
        .with_periods(args.periods)
        .with_seed(args.seed)
        .with_start_period(args.start_period.clone())
        .with_drift(args.drift)
        .with_holdout_share(args.holdout_share)
        .with_part_rows(args.part_rows)
        .check()?;
    let mut world = generator::World::new(params.clone());
    if let (Some(path), Some(period)) = (&args.assignments, &args.period) {
        world = world.with_override(generator::AssignmentOverride::read(path, &params, period)?);
    }
    let staged = StagedDir::create(&args.out, args.force)?;
    let started = std::time::Instant::now();
    tracing::info!(
        partners = params.n_partners,
        periods = params.n_periods,
        seed = params.seed,
        "generating"
    );
    let summary = generator::generate_world(&world, staged.path()).context("generation failed")?;
    let out = staged.commit()?;
    let config = out.join("segtune.toml");
    tracing::info!(
        seconds = started.elapsed().as_secs_f64(),
        "generated; next: segtune validate --config {}",
        config.display()
    );
    // stdout carries only data: one JSON line, as every command.
    println!(
        "{}",
        serde_json::json!({
            "out": out,
            "periods": summary.periods,
            "partners": summary.n_partners,
            "config": config,
        })
    );
    Ok(())
}

fn show_progress(cli: &Cli, no_progress: bool) -> bool {
    !no_progress && !cli.quiet && cli.verbose == 0 && std::io::stderr().is_terminal()
}

fn run(cli: &Cli, args: &RunArgs) -> anyhow::Result<()> {
    let settings = RunSettings::load(&args.config, &args.inputs.to_overrides())?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| segtune::run::default_run_dir(&settings));
    let options = segtune::run::RunOptions {
        out,
        force: args.force,
        progress: show_progress(cli, args.no_progress),
        dump_design: args.dump_design.clone(),
        approval: None,
    };
    let summary = segtune::run::run(&settings, &options)?;
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}

fn simulate(args: &SimulateArgs) -> anyhow::Result<()> {
    if args.periods < 2 || args.from_period < 2 || args.from_period > args.periods {
        return Err(UsageError(format!(
            "--periods must be at least 2 and --from-period in 2..={} (period 1 is the generator's own draw)",
            args.periods
        ))
        .into());
    }
    let staged = StagedDir::create(&args.out, args.force)?;
    let params = segtune::simulate::SimulationParams {
        partners: args.partners,
        periods: args.periods,
        seeds: args.seeds,
        from_period: args.from_period,
        extra_config: args.extra_config.clone(),
        shock_period: args.shock_period,
    };
    if args
        .shock_period
        .is_some_and(|p| p < 3 || p + 2 > args.periods)
    {
        return Err(UsageError(format!(
            "--shock-period must be in 3..={} (a weight before it and two periods after it)",
            args.periods.saturating_sub(2)
        ))
        .into());
    }
    let started = std::time::Instant::now();
    let simulation = segtune::simulate::simulate(&params, staged.path())?;
    segtune::outputs::write_json(&staged.path().join("simulation.json"), &simulation)?;
    fs_err::write(
        staged.path().join("simulation.svg"),
        segtune::simulate::chart(&simulation)?,
    )?;
    let out = staged.commit()?;
    println!(
        "{}",
        serde_json::json!({
            "out": out,
            "seeds": args.seeds,
            "partners": args.partners,
            "periods": args.periods,
            "from_period": args.from_period,
            "mean_captured": simulation.mean_captured,
            "min_captured": simulation.min_captured,
            "captured": simulation.seeds.iter().map(|s| s.captured).collect::<Vec<_>>(),
            "shock_passed": args.shock_period.map(|_| simulation.shock.iter().filter(|s| s.passed).count()),
            "shock": simulation.shock,
            "seconds": started.elapsed().as_secs_f64(),
        })
    );
    Ok(())
}

/// Prints a command's summary as one JSON line.
fn print_json(summary: anyhow::Result<impl serde::Serialize>) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(&summary?)?);
    Ok(())
}

fn assign(args: &AssignArgs) -> anyhow::Result<()> {
    print_json(segtune::assign::assign(
        &args.run,
        &args.partners,
        &args.out,
        args.force,
    ))
}

/// Marks a folder as written by `segtune demo`, so a later demo may replace it.
const DEMO_MARKER: &str = ".segtune-demo";

fn demo(cli: &Cli, args: &DemoArgs) -> anyhow::Result<()> {
    let earlier_demo = args.out.join(DEMO_MARKER).exists();
    let staged = StagedDir::create(&args.out, args.force || earlier_demo)?;
    let params = GeneratorParams::new()
        .with_partners(args.partners)
        .with_seed(args.seed)
        .check()?;
    let started = std::time::Instant::now();
    let data = staged.path().join("data");
    fs_err::create_dir(&data)?;
    // Only the quarters the demo runs are written: the one before the last
    // now, the last after the closed loop below (the simulation behind them
    // runs through every quarter either way).
    let n_periods = params.periods.len();
    let world = generator::World::new(params.clone());
    let world = if n_periods >= 2 {
        world.only_period(n_periods - 2)
    } else {
        world
    };
    generator::generate_world(&world, &data).context("generation failed")?;
    // The quarter before the last first, so that the last quarter's run has a
    // previous run: stable ids, strata, migration and drift, as in production.
    let config = fs_err::read_to_string(data.join("segtune.toml"))?;
    let mut previous_run = None;
    if let [.., before, last] = params.periods.as_slice() {
        fs_err::write(
            data.join("previous.toml"),
            config.replace(last.as_str(), before.as_str()),
        )?;
        let settings = RunSettings::load(&data.join("previous.toml"), &Overrides::default())?;
        let out = staged.path().join("runs").join(before);
        segtune::run::run(
            &settings,
            &segtune::run::RunOptions {
                out: out.clone(),
                force: false,
                progress: show_progress(cli, false),
                dump_design: None,
                approval: None,
            },
        )?;
        // Closed loop, as in production: the last quarter's draw is the one
        // that run proposes (its assignments_next), and the generator computes
        // the last quarter's outcomes for that draw (the rest is unchanged).
        let draw = out.join("assignments_next.parquet");
        let world = generator::World::new(params.clone())
            .with_override(generator::AssignmentOverride::read(&draw, &params, last)?)
            .only_period(n_periods - 1);
        let closed_loop = staged.path().join("data.closed-loop");
        generator::generate_world(&world, &closed_loop).context("generation failed")?;
        // The quarter before the last from the first generation (its run's
        // inputs), everything else from the closed loop.
        for folder in ["periods", "truth"] {
            fs_err::rename(
                data.join(folder).join(before),
                closed_loop.join(folder).join(before),
            )?;
        }
        fs_err::remove_dir_all(&data)?;
        fs_err::rename(&closed_loop, &data)?;
        previous_run = Some(out);
    }
    let overrides = Overrides {
        previous_run,
        ..Overrides::default()
    };
    let settings = RunSettings::load(&data.join("segtune.toml"), &overrides)?;
    let options = segtune::run::RunOptions {
        out: staged.path().join("run"),
        force: false,
        progress: show_progress(cli, false),
        dump_design: None,
        approval: None,
    };
    let summary = segtune::run::run(&settings, &options)?;
    fs_err::write(
        staged.path().join(DEMO_MARKER),
        "written by segtune demo; a later demo replaces this folder\n",
    )?;
    let out = staged.commit()?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{}",
        segtune::summary::for_people(&summary, &out.join("run"), &params, seconds).trim_end()
    );
    Ok(())
}

fn validate(args: &ValidateArgs) -> anyhow::Result<()> {
    let source = fs_err::read_to_string(&args.config).map_err(|source| ConfigError::Read {
        path: args.config.clone(),
        source,
    })?;
    let raw: RawConfig = toml::from_str(&source).map_err(|error| ConfigError::Parse {
        path: args.config.clone(),
        message: error.to_string().trim_end().to_string(),
    })?;
    let (settings, config_problems) =
        RunSettings::resolve_lenient(&args.config, &source, raw, &args.inputs.to_overrides());
    let data = settings.as_ref().map(ingest);
    let data_error = match &data {
        Some(Err(error)) => Some(error.clone()),
        _ => None,
    };
    let mut config_problems = config_problems;
    if let (Some(settings), Some(Err(_))) = (&settings, &data) {
        // The data failed, but limits that cannot be met with the schemes
        // the configuration lists are found all the same (exit 2 wins).
        if settings.tuning.schemes.is_some() {
            if let Err(ConfigError::Invalid { problems, .. }) = settings.check_tuning(None) {
                config_problems.extend(problems);
            }
        }
    }
    if !config_problems.is_empty() {
        let config_error = ConfigError::Invalid {
            path: args.config.clone(),
            problems: config_problems,
        };
        return Err(match data_error {
            // Both kinds: report both, exit 2 wins.
            Some(data_error) => anyhow::Error::new(config_error).context(format!("{data_error}")),
            None => config_error.into(),
        });
    }
    let inputs = match data {
        Some(Ok(inputs)) => inputs,
        Some(Err(error)) => return Err(error.into()),
        None => return Err(IngestError { problems: vec![] }.into()),
    };
    // The tuning limits against the schemes, and what the rules leave to
    // k-means must be clusterable, as `run` checks.
    let mut warnings = Vec::new();
    if let Some(settings) = &settings {
        warnings =
            settings.check_tuning(inputs.assignments.as_ref().map(|a| a.schemes.as_slice()))?;
        for warning in &warnings {
            tracing::warn!("{warning}");
        }
        let (_, matches) = segtune::rules::compile_and_apply(settings, &inputs.partners)?;
        segtune::segment::check_clusterable(&inputs.partners, &matches.unmatched_rows(), settings)?;
    }
    let summary = serde_json::json!({
        "status": "valid",
        "config": args.config,
        "partners": inputs.partners.ids.len(),
        "partner_files": inputs.partners.files.len(),
        "numeric_features": inputs.partners.numeric.iter().map(|c| &c.name).collect::<Vec<_>>(),
        "categorical_features": inputs.partners.categorical.iter().map(|c| &c.name).collect::<Vec<_>>(),
        "assignments": inputs.assignments.as_ref().map(|a| a.partner_row.len()),
        "outcomes": inputs.outcomes.as_ref().map(|o| o.partner_row.len()),
        "warnings": warnings,
    });
    println!("{summary}");
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    let result = match &cli.command {
        Command::Generate(args) => generate(args),
        Command::Demo(args) => demo(&cli, args),
        Command::Run(args) => run(&cli, args),
        Command::Assign(args) => assign(args),
        Command::Validate(args) => validate(args),
        Command::Simulate(args) => simulate(args),
        Command::Report(args) => print_json(
            segtune::report::rerender(&args.run)
                .map(|report| serde_json::json!({ "report": report })),
        ),
        Command::Approve(args) => print_json(segtune::publish::approve(
            &args.run,
            &args.by,
            args.overrides.as_deref(),
            show_progress(&cli, args.no_progress),
        )),
        Command::Publish(args) => print_json(segtune::publish::publish(
            &args.run,
            &args.to,
            args.rollback,
        )),
    };
    match result {
        Ok(()) => ExitStatus::Success.into(),
        Err(error) => {
            let status = classify(&error);
            match cli.log_format {
                LogFormat::Text => eprintln!("error: {error:#}"),
                // One JSON line like the log's, with the exit code, written
                // whatever RUST_LOG lets through.
                LogFormat::Json => eprintln!(
                    "{}",
                    serde_json::json!({
                        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                        "level": "ERROR",
                        "message": format!("{error:#}"),
                        "exit_code": status as u8,
                    })
                ),
            }
            status.into()
        }
    }
}
