//! The pipeline runner: chains the stages through their hand-off types and
//! writes the run folder, which appears complete or not at all.
//!
//! ingest -> features -> segment -> evaluate -> tune -> draw -> outputs.
//! Stages never call each other; only this runner knows the order. Each
//! stage's time goes into the manifest (the only part of the outputs that
//! differs between two runs of the same inputs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;

use crate::config::RunSettings;
use crate::evaluate::{evaluate, Evaluation, LiftRow};
use crate::ingest::ingest;
use crate::output::StagedDir;
use crate::segment::{profiles, segment, SegmentInfo};
use crate::tune::{tune, WeightRow};
use crate::{draw, features, manifest, outputs, previous, report};

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The run folder to write.
    pub out: PathBuf,
    /// Replace an existing run folder.
    pub force: bool,
    /// Show progress bars (a terminal, not quiet).
    pub progress: bool,
    /// Debug: write every estimated cell's design matrix to
    /// `DIR/design.parquet` (outside the run folder).
    pub dump_design: Option<PathBuf>,
    /// Approving with overrides: the run is re-done on the same inputs with
    /// them applied, keeps its run id and is written approved (see
    /// [`crate::overrides`]).
    pub approval: Option<crate::overrides::Approval>,
}

/// What a run did, for the command line.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunSummary {
    /// The run folder.
    pub run_dir: PathBuf,
    /// Run id.
    pub run_id: String,
    /// Evaluated period.
    pub evaluated_period: String,
    /// Target period.
    pub target_period: String,
    /// Partners.
    pub partners: usize,
    /// Segments.
    pub segments: usize,
    /// Lift rows.
    pub lift_rows: usize,
    /// Weight rows.
    pub weights: usize,
    #[serde(skip)]
    /// Segments, for people.
    pub segment_list: Vec<SegmentInfo>,
    #[serde(skip)]
    /// Lift rows, for people.
    pub lift: Vec<LiftRow>,
    #[serde(skip)]
    /// Weights, for people.
    pub weight_rows: Vec<WeightRow>,
}

/// Times stages and shows progress.
struct Stages {
    timings: BTreeMap<String, f64>,
    bar: Option<indicatif::ProgressBar>,
}

impl Stages {
    fn new(progress: bool) -> Self {
        let bar = progress.then(crate::progress::spinner);
        Self {
            timings: BTreeMap::new(),
            bar,
        }
    }

    fn time<T>(
        &mut self,
        name: &str,
        work: impl FnOnce() -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{name} ..."));
        }
        let started = Instant::now();
        let result = work();
        let seconds = started.elapsed().as_secs_f64();
        self.timings.insert(name.to_string(), seconds);
        // With a spinner on screen the stage shows there; the log says it
        // otherwise (or with -v).
        if self.bar.is_some() {
            tracing::debug!(stage = name, seconds, "stage done");
        } else {
            tracing::info!(stage = name, seconds, "stage done");
        }
        result
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            crate::progress::finish(bar);
        }
    }
}

/// The default run folder: `runs/<evaluated period>` beside the configuration.
pub fn default_run_dir(settings: &RunSettings) -> PathBuf {
    settings
        .config_path
        .parent()
        .unwrap_or(Path::new("."))
        .join("runs")
        .join(&settings.period)
}

/// Runs the whole pipeline into `options.out`.
pub fn run(settings: &RunSettings, options: &RunOptions) -> anyhow::Result<RunSummary> {
    let started = Instant::now();
    // Every log line of the run says which run it is (two runs of `demo`
    // or of a scheduler's day otherwise log alike); the run id is added
    // once known.
    let span = tracing::info_span!(
        "run",
        period = %settings.period,
        run_id = tracing::field::Empty
    );
    let _entered = span.enter();
    // Refuse an existing folder before any work.
    let staged = StagedDir::create(&options.out, options.force)?;
    let mut stages = Stages::new(options.progress);
    let result = (|| -> anyhow::Result<RunSummary> {
        let inputs = stages.time("ingest", || Ok(ingest(settings)?))?;
        // The tuning limits against the schemes, before any work (an
        // approval's overrides were checked against the run already).
        let tuning_warnings = if options.approval.is_none() {
            settings.check_tuning(inputs.assignments.as_ref().map(|a| a.schemes.as_slice()))?
        } else {
            Vec::new()
        };
        for warning in &tuning_warnings {
            tracing::warn!("{warning}");
        }
        let previous = match &settings.inputs.previous_run {
            Some(dir) => Some(stages.time("previous run", || Ok(previous::read(dir)?))?),
            None => None,
        };
        // A previous run never approved: its proposed weights are taken as
        // those the evaluated period was drawn under, which ops should know.
        let unapproved_previous = previous
            .as_ref()
            .and_then(|p| p.status.as_deref())
            .filter(|status| !matches!(*status, "approved" | "published"));
        if let Some(status) = unapproved_previous {
            tracing::warn!(
                status,
                "the previous run was never approved: its proposed weights are taken as the ones the evaluated period was drawn under"
            );
        }
        let (rules, matches) = stages.time("rules", || {
            crate::rules::compile_and_apply(settings, &inputs.partners)
        })?;
        let clustered_rows = matches.unmatched_rows();
        crate::segment::check_clusterable(&inputs.partners, &clustered_rows, settings)?;
        let mut features = stages.time("features", || {
            features::build(&inputs.partners, &clustered_rows, &settings.features)
        })?;
        let mut segments = stages.time("segment", || {
            segment(
                &mut features,
                &clustered_rows,
                &rules,
                &matches,
                &inputs.partners,
                previous.as_ref(),
                settings,
            )
        })?;
        let approval = options.approval.as_ref();
        let applied = match approval {
            Some(a) => a
                .overrides
                .apply(&a.file, &a.by, &mut segments, &inputs.partners)?,
            None => Vec::new(),
        };
        let profiles = stages.time("profiles", || Ok(profiles(&inputs.partners, &segments)))?;
        let evaluation: Evaluation = stages.time("evaluate", || {
            Ok(evaluate(
                &inputs,
                &segments,
                previous.as_ref(),
                settings,
                options.dump_design.is_some(),
            ))
        })?;
        let tuned = stages.time("tune", || {
            // What ops changed at approval, said in the weights' reasons.
            let notes = approval
                .map(|a| a.overrides.scheme_notes(&a.by))
                .unwrap_or_default();
            let mut tuned = tune(&evaluation, &segments, previous.as_ref(), settings, &notes)?;
            if let Some(a) = approval {
                // Segments the overrides left alone keep their proposal.
                let touched: std::collections::BTreeSet<u32> = a
                    .overrides
                    .scheme
                    .iter()
                    .map(|entry| entry.segment)
                    .chain(a.overrides.pin_partners.iter().map(|pin| pin.segment))
                    .chain(
                        applied
                            .iter()
                            .flat_map(|done| done.moved_from.iter().copied()),
                    )
                    .collect();
                crate::tune::keep_proposal(&options.out, &touched, &mut tuned)?;
            }
            Ok(tuned)
        })?;
        let mut weights = tuned.weights;
        let power = stages.time("power", || {
            Ok(crate::power::power(
                &evaluation,
                &segments,
                &weights,
                settings,
            ))
        })?;
        crate::power::apply_holdout_policy(&mut weights, &power, settings);
        let next = stages.time("draw", || {
            Ok(draw::draw(
                &inputs.partners,
                &segments,
                &weights,
                &inputs.strategic,
                previous.as_ref().map(|p| &p.holdout_streak),
                settings,
            ))
        })?;
        // A holdout cut short by the eligibility rules is published as drawn,
        // so that the next run's randomisation check expects what happened.
        for row in weights.iter_mut() {
            if let Some(share) = next.short_holdout.get(&row.segment_id) {
                row.holdout_share = *share;
            }
        }
        let dir = staged.path().to_path_buf();
        let input_files = stages.time("hash inputs", || {
            manifest::hash_inputs(settings, &options.out)
        })?;
        let previous_run_id = previous.as_ref().and_then(|p| p.run_id.clone());
        let run_id = match approval {
            Some(a) => a.run_id.clone(),
            None => manifest::run_id(settings, &input_files, previous_run_id.as_deref()),
        };
        span.record("run_id", run_id.as_str());
        let status = if approval.is_some() {
            "approved"
        } else {
            "proposed"
        };
        stages.time("write", || {
            // The two tables with a row per partner, encoded side by side.
            let (written_segments, written_next) = rayon::join(
                || outputs::write_segments(&dir, &inputs.partners, &segments),
                || outputs::write_assignments_next(&dir, &inputs.partners, &next),
            );
            written_segments?;
            written_next?;
            outputs::write_profiles(&dir, &inputs.partners.numeric.iter().map(|c| c.name.clone()).collect::<Vec<_>>(), &profiles)?;
            outputs::write_lift(&dir, &evaluation.rows)?;
            outputs::write_power(&dir, &power)?;
            outputs::write_randomisation(&dir, &evaluation.randomisation)?;
            outputs::write_weights(&dir, &weights)?;
            if approval.is_some() {
                // The proposal, kept beside the approved weights.
                fs_err::copy(
                    crate::tune::proposal(&options.out)?,
                    dir.join("weights_proposed.parquet"),
                )?;
            }
            outputs::write_json(&dir.join("posterior.json"), &tuned.posterior)?;
            outputs::write_migration(&dir, &segments)?;
            let model = serde_json::json!({
                "features": features.names,
                "transform": features.transform,
                "kmeans_segment_ids": segments.segments.iter().filter(|s| s.source == crate::segment::SOURCE_KMEANS).map(|s| s.id).collect::<Vec<_>>(),
                "centroids": segments.centroids.outer_iter().map(|row| row.to_vec()).collect::<Vec<_>>(),
                "drift_reference": inputs.partners.numeric.par_iter().map(|c| segtune_models::drift::DriftReference::fit(&c.name, &c.values)).collect::<Vec<_>>(),
            });
            outputs::write_json(&dir.join("model.json"), &model)
        })?;
        let drift: Vec<crate::report::DriftRow> = previous
            .as_ref()
            .map(|p| {
                p.drift_reference
                    .iter()
                    .filter_map(|reference| {
                        let column = inputs
                            .partners
                            .numeric
                            .iter()
                            .find(|c| c.name == reference.feature)?;
                        let psi = reference.psi(&column.values);
                        Some(crate::report::DriftRow {
                            feature: reference.feature.clone(),
                            psi,
                            warning: psi > settings.segments.drift_threshold,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let html = stages.time("report", || {
            report::render(&report::ReportInput {
                header: report::RunHeader {
                    run_id: run_id.clone(),
                    evaluated_period: settings.period.clone(),
                    target_period: settings.target_period.clone(),
                    status: status.into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                },
                partners: &inputs.partners,
                segments: &segments,
                profiles: &profiles,
                evaluation: &evaluation,
                weights: &weights,
                tune_outcome: settings.evaluation.tune_outcome.as_deref(),
                fdr: settings.evaluation.fdr,
                holdout_share: settings.tuning.holdout_share,
                selection: &segments.selection,
                drift: &drift,
                drift_threshold: settings.segments.drift_threshold,
                unapproved_previous,
                config_warnings: &tuning_warnings,
                outcomes: &settings.outcomes,
                margin_rate: settings.margin_rate,
                power: &power,
                srm_p_threshold: settings.evaluation.srm_p_threshold,
            })
        })?;
        let (html, report_context) = html;
        fs_err::write(dir.join("report.html"), html)?;
        // The page's context, so that `segtune report` can re-render it
        // after approval without the inputs.
        outputs::write_json(&dir.join("report.json"), &report_context)?;
        if let Some(design_dir) = &options.dump_design {
            outputs::write_designs(design_dir, &evaluation.designs)?;
        }
        let smallest = segments.segments.iter().map(|s| s.size).min().unwrap_or(0) as f64
            / inputs.partners.ids.len().max(1) as f64;
        let mut timings = stages.timings.clone();
        timings.insert("total".into(), started.elapsed().as_secs_f64());
        let manifest = serde_json::json!({
            "schema_version": manifest::SCHEMA_VERSION,
            "program": "segtune",
            "program_version": env!("CARGO_PKG_VERSION"),
            "run_id": run_id,
            "status": status,
            "approval": approval.map(|a| serde_json::json!({
                "approved_by": a.by,
                "approved_at": a.at,
                "overrides_file": a.file.display().to_string(),
                "overrides_sha256": a.sha256,
                "overrides": applied,
                "override_entries": a.overrides,
            })),
            "evaluated_period": settings.period,
            "target_period": settings.target_period,
            "seed": settings.seed,
            "config": manifest::config_json(settings, &options.out),
            "inputs": input_files,
            "previous_run_id": previous_run_id,
            "previous_run_status": previous.as_ref().and_then(|p| p.status.as_deref()),
            "rows": {
                "partners": inputs.partners.ids.len(),
                "assignments": inputs.assignments.as_ref().map(|a| a.partner_row.len()),
                "outcomes": inputs.outcomes.as_ref().map(|o| o.partner_row.len()),
                "segments": segments.segments.len(),
                "lift": evaluation.rows.len(),
                "weights": weights.len(),
                "assignments_next": next.scheme_id.len(),
            },
            "quality": {
                "k": segments.selection.chosen,
                "rule_segments": segments.segments.iter().filter(|s| s.source.starts_with("rule:")).count(),
                "k_selection": segments.selection,
                "continuity": segments.continuity,
                "drift": drift,
                "inertia": segments.inertia,
                "smallest_segment_share": smallest,
                "strata": evaluation.strata,
                "assigned_without_stratum": evaluation.n_without_stratum,
                "lift": {
                    "cells": evaluation.rows.len(),
                    "estimated": evaluation.rows.iter().filter(|r| r.lift.is_some()).count(),
                    "significant": evaluation.rows.iter().filter(|r| r.significant == Some(true)).count(),
                    "totals": evaluation.totals().into_iter().filter(|t| t.segment_id.is_none()).collect::<Vec<_>>(),
                },
                "randomisation_refused": evaluation.refused,
                "power_unreachable": power.iter().filter(|p| !p.reachable).map(|p| (p.outcome.clone(), p.segment_id)).collect::<Vec<_>>(),
            },
            "segment_id_high_water": segments.segment_id_high_water,
            "rule_segment_ids": segments.segments.iter().filter_map(|s| s.source.strip_prefix("rule:").map(|rule| (rule.to_string(), s.id))).collect::<std::collections::BTreeMap<_, _>>(),
            "timings": { "seconds": timings },
        });
        let mut manifest = manifest;
        manifest["outputs"] = serde_json::to_value(manifest::hash_outputs(&dir)?)?;
        outputs::write_json(&dir.join("manifest.json"), &manifest)?;
        if approval.is_some() {
            // The page with its approval, in the same swap as the rest.
            crate::report::rerender(&dir)?;
        }
        Ok(RunSummary {
            run_dir: options.out.clone(),
            run_id,
            evaluated_period: settings.period.clone(),
            target_period: settings.target_period.clone(),
            partners: inputs.partners.ids.len(),
            segments: segments.segments.len(),
            lift_rows: evaluation.rows.len(),
            weights: weights.len(),
            segment_list: segments.segments.clone(),
            lift: evaluation.rows.clone(),
            weight_rows: weights,
        })
    })();
    stages.finish();
    let summary = result?;
    staged.commit()?;
    Ok(summary)
}
