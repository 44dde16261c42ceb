//! `segtune approve` and `segtune publish`: only approved weights reach
//! downstream systems, and they never see a half-written or mixed version.
//!
//! Publishing copies the run's weights into
//! `DIR/history/<target_period>/<run_id>/` (weights.parquet, weights.json,
//! weights.schema.json and version.json, which says the run, its periods and
//! its approval; written to a hidden folder, synced and renamed into place), then replaces the `DIR/latest` symbolic link atomically (a new
//! link renamed over the old one, the folder synced). A reader that opens
//! `DIR/latest/...` sees the previous version or the new one, whole. A lock
//! file keeps two publishes from interleaving; published versions are never
//! overwritten; going back to an older target period needs `--rollback`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use segtune_data::Period;

use crate::exit::UsageError;
use crate::output::StagedDir;
use crate::outputs::write_json;

/// The files a published version holds.
pub const PUBLISHED_FILES: [&str; 4] = [
    "weights.parquet",
    "weights.json",
    "weights.schema.json",
    "version.json",
];

/// How long a publish waits for another one to finish.
const LOCK_WAIT: Duration = Duration::from_secs(30);

fn read_manifest(run_dir: &Path) -> anyhow::Result<serde_json::Value> {
    let path = run_dir.join("manifest.json");
    let text = fs_err::read_to_string(&path).map_err(|e| {
        UsageError(format!(
            "`{}` is not a segtune run folder: {e}",
            run_dir.display()
        ))
    })?;
    serde_json::from_str(&text).map_err(|e| {
        UsageError(format!(
            "`{}` is not a segtune manifest: {e}",
            path.display()
        ))
        .into()
    })
}

/// Writes a new version of the run folder with `manifest` and the report
/// re-rendered from it (and whatever `also` adds), swapped in whole: a crash
/// leaves the run as it was or as it is now, never a mix (say, a manifest
/// that says approved beside a report that says proposed).
fn rewrite_run(
    run_dir: &Path,
    manifest: &serde_json::Value,
    also: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let staged = StagedDir::edit(run_dir, &["manifest.json", "report.html"])?;
    also(staged.path())?;
    write_json(&staged.path().join("manifest.json"), manifest)?;
    if staged.path().join("report.json").exists() {
        crate::report::rerender(staged.path())?;
    } else {
        tracing::warn!(run = %run_dir.display(), "no report.json: report.html keeps its status");
        if run_dir.join("report.html").exists() {
            fs_err::copy(
                run_dir.join("report.html"),
                staged.path().join("report.html"),
            )?;
        }
    }
    staged.commit()?;
    Ok(())
}

fn text<'a>(manifest: &'a serde_json::Value, key: &str, run_dir: &Path) -> anyhow::Result<&'a str> {
    manifest[key].as_str().ok_or_else(|| {
        UsageError(format!(
            "`{}`: the manifest has no `{key}`",
            run_dir.join("manifest.json").display()
        ))
        .into()
    })
}

/// What `approve` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ApproveSummary {
    /// The run folder.
    pub run_dir: PathBuf,
    /// Its run id.
    pub run_id: String,
    /// Who approved.
    pub approved_by: String,
    /// When (UTC, RFC 3339).
    pub approved_at: String,
    /// The overrides applied, in words (empty without `--overrides`).
    pub overrides: Vec<String>,
}

/// Marks a proposed run approved by `by`, recording who and when in the
/// manifest. The proposed weights are kept as `weights_proposed.parquet`
/// beside the approved ones. With `overrides`, the run is re-done on its own
/// inputs with them applied ([`crate::overrides`]).
pub fn approve(
    run_dir: &Path,
    by: &str,
    overrides: Option<&Path>,
    progress: bool,
) -> anyhow::Result<ApproveSummary> {
    let by = by.trim();
    if by.is_empty() {
        return Err(UsageError("--by needs the approver's name".into()).into());
    }
    crate::output::clear_leftovers(run_dir);
    let mut manifest = read_manifest(run_dir)?;
    let run_id = text(&manifest, "run_id", run_dir)?.to_string();
    match text(&manifest, "status", run_dir)? {
        "proposed" => {}
        status => {
            return Err(UsageError(format!(
                "run {run_id} is already {status}; approve a proposed run"
            ))
            .into())
        }
    }
    crate::manifest::verify_outputs(run_dir, &manifest)?;
    let approved_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    if let Some(file) = overrides {
        return approve_with_overrides(run_dir, &manifest, by, &approved_at, file, progress);
    }
    manifest["status"] = "approved".into();
    manifest["approval"] = serde_json::json!({
        "approved_by": by,
        "approved_at": approved_at,
        "overrides": [],
    });
    // The proposal kept below is weights.parquet's bytes: recorded as such.
    if manifest["outputs"].is_object() {
        manifest["outputs"]["weights_proposed.parquet"] =
            manifest["outputs"]["weights.parquet"].clone();
    }
    rewrite_run(run_dir, &manifest, |staging| {
        // The proposal, kept beside the approved weights (the same bytes).
        let proposed = staging.join("weights_proposed.parquet");
        if !proposed.exists() {
            fs_err::hard_link(staging.join("weights.parquet"), &proposed)
                .or_else(|_| fs_err::copy(staging.join("weights.parquet"), &proposed).map(drop))?;
        }
        Ok(())
    })?;
    Ok(ApproveSummary {
        run_dir: run_dir.to_path_buf(),
        run_id,
        approved_by: by.to_string(),
        approved_at,
        overrides: Vec::new(),
    })
}

/// The run's segments and schemes, from its weights.json.
fn run_shape(run_dir: &Path) -> anyhow::Result<crate::overrides::RunShape> {
    let path = run_dir.join("weights.json");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&fs_err::read_to_string(&path)?)
        .with_context(|| format!("`{}` is not a weights list", path.display()))?;
    let mut shape = crate::overrides::RunShape::default();
    for row in rows {
        if let (Some(id), Some(name), Some(scheme)) = (
            row["segment_id"].as_u64(),
            row["segment_name"].as_str(),
            row["scheme_id"].as_str(),
        ) {
            shape.segments.insert(id as u32, name.to_string());
            shape.schemes.insert(scheme.to_string());
        }
    }
    Ok(shape)
}

/// Approval with overrides: checks them, checks that every input is still
/// what the run read (SHA-256 against the manifest), then re-does the run in
/// place with the overrides applied (staged, so a refusal changes nothing).
fn approve_with_overrides(
    run_dir: &Path,
    manifest: &serde_json::Value,
    by: &str,
    approved_at: &str,
    file: &Path,
    progress: bool,
) -> anyhow::Result<ApproveSummary> {
    let source = fs_err::read_to_string(file)
        .map_err(|e| UsageError(format!("cannot read the overrides file: {e}")))?;
    let overrides = crate::overrides::Overrides::parse(file, &source)?;
    let mut settings = crate::config::RunSettings::from_manifest(&manifest["config"], run_dir)
        .map_err(|e| {
            UsageError(format!(
                "`{}`: its configuration cannot be read back ({e}); re-run with this segtune version to approve with overrides",
                run_dir.join("manifest.json").display()
            ))
        })?;
    overrides.check(file, &run_shape(run_dir)?, &settings.tuning)?;
    let recorded: Vec<(String, String, String)> = manifest["inputs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            let field = |key: &str| i[key].as_str().unwrap_or_default().to_string();
            (field("role"), field("path"), field("sha256"))
        })
        .collect();
    let now: Vec<(String, String, String)> = crate::manifest::hash_inputs(&settings, run_dir)?
        .into_iter()
        .map(|i| (i.role.to_string(), i.path, i.sha256))
        .collect();
    let changed: Vec<crate::ingest::Problem> = recorded
        .iter()
        .filter(|r| !now.contains(r))
        .map(|(role, path, _)| crate::ingest::Problem {
            file: run_dir.join(path),
            column: None,
            row: None,
            partner_id: None,
            message: format!(
                "this {} input changed or went missing since the run; approving with overrides re-does the run on its inputs: run the period again instead",
                role.replace('_', " ")
            ),
        })
        .chain(now.iter().filter(|n| !recorded.iter().any(|r| r.1 == n.1)).map(|(role, path, _)| {
            crate::ingest::Problem {
                file: run_dir.join(path),
                column: None,
                row: None,
                partner_id: None,
                message: format!("a {} input file the run did not read", role.replace('_', " ")),
            }
        }))
        .collect();
    if !changed.is_empty() {
        return Err(crate::ingest::IngestError { problems: changed }.into());
    }
    settings.tuning = overrides.tuning(&settings.tuning);
    let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(source.as_bytes()));
    let run_id = text(manifest, "run_id", run_dir)?.to_string();
    let approval = crate::overrides::Approval {
        overrides,
        file: file.to_path_buf(),
        sha256,
        by: by.to_string(),
        at: approved_at.to_string(),
        run_id: run_id.clone(),
    };
    crate::run::run(
        &settings,
        &crate::run::RunOptions {
            out: run_dir.to_path_buf(),
            force: true,
            progress,
            dump_design: None,
            approval: Some(approval),
        },
    )
    .with_context(|| {
        format!(
            "approving `{}` with the overrides in `{}` failed; nothing was changed",
            run_dir.display(),
            file.display()
        )
    })?;
    let manifest = read_manifest(run_dir)?;
    Ok(ApproveSummary {
        run_dir: run_dir.to_path_buf(),
        run_id,
        approved_by: by.to_string(),
        approved_at: approved_at.to_string(),
        overrides: manifest["approval"]["overrides"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| o["text"].as_str().map(str::to_string))
            .collect(),
    })
}

/// What `publish` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PublishSummary {
    /// The published version's folder.
    pub version: PathBuf,
    /// Target period.
    pub target_period: String,
    /// Run id.
    pub run_id: String,
    /// Whether `latest` changed (false: this version was already latest).
    pub changed: bool,
    /// What `latest` pointed at before, relative to the publish folder.
    pub previous: Option<String>,
}

/// The JSON Schema (draft 2020-12) of `weights.json`.
pub fn weights_json_schema() -> serde_json::Value {
    let number = serde_json::json!({ "type": "number", "minimum": 0, "maximum": 1 });
    serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://segtune.example/schemas/weights.schema.json",
        "title": "segtune weights",
        "description": "Per segment and scheme, the probability that a partner of the segment who is not held out gets the scheme in the target period (weights sum to 1 per segment).",
        "type": "array",
        "items": {
            "type": "object",
            "additionalProperties": false,
            "required": ["target_period", "segment_id", "segment_name", "scheme_id", "weight", "previous_weight", "holdout_share", "reason"],
            "properties": {
                "target_period": { "type": "string", "minLength": 1 },
                "segment_id": { "type": "integer", "minimum": 0, "maximum": 4294967295u64 },
                "segment_name": { "type": "string" },
                "scheme_id": { "type": "string", "minLength": 1 },
                "weight": number,
                "previous_weight": { "type": ["number", "null"], "minimum": 0, "maximum": 1 },
                "holdout_share": number,
                "reason": { "type": "string" }
            }
        }
    })
}

/// Holds `DIR/.publish.lock` while it lives.
struct PublishLock {
    _file: std::fs::File,
}

impl PublishLock {
    /// Waits up to [`LOCK_WAIT`] for the lock.
    fn acquire(to: &Path) -> anyhow::Result<Self> {
        let path = to.join(".publish.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open the lock `{}`", path.display()))?;
        let started = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Self { _file: file }),
                Err(std::fs::TryLockError::WouldBlock) if started.elapsed() < LOCK_WAIT => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(UsageError(format!(
                    "another publish to `{}` has held the lock for {} s: try again when it is done",
                    to.display(),
                    LOCK_WAIT.as_secs()
                ))
                    .into())
                }
                Err(std::fs::TryLockError::Error(error)) => return Err(error.into()),
            }
        }
    }
}

/// `latest`'s target relative to `to` (`history/<period>/<run_id>`).
fn latest(to: &Path) -> Option<String> {
    std::fs::read_link(to.join("latest"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// Refuses to publish a run whose version already stands with other
/// weights (the same run approved again with other overrides): published
/// versions are never overwritten.
fn same_weights(run_dir: &Path, version: &Path) -> anyhow::Result<()> {
    for file in ["weights.parquet", "weights.json"] {
        let (ours, theirs) = (run_dir.join(file), version.join(file));
        if fs_err::read(&ours)? != fs_err::read(&theirs)? {
            return Err(UsageError(format!(
                "`{}` is already published with other weights than `{}` (the run approved again with other overrides?); published versions are never overwritten. To correct them, put the limits in the configuration ([tuning] or [[tuning.segment]]) and run the period again: that run has its own run id",
                version.display(),
                ours.display()
            ))
            .into());
        }
    }
    Ok(())
}

/// Removes `.latest.tmp-PID` links left by killed publishes (called under
/// the lock, so none is in use).
fn remove_stale_links(to: &Path) {
    if let Ok(entries) = std::fs::read_dir(to) {
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(".latest.tmp-")
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Publishes an approved run's weights into `to`.
pub fn publish(run_dir: &Path, to: &Path, rollback: bool) -> anyhow::Result<PublishSummary> {
    crate::output::clear_leftovers(run_dir);
    let manifest = read_manifest(run_dir)?;
    let run_id = text(&manifest, "run_id", run_dir)?.to_string();
    let target_period = text(&manifest, "target_period", run_dir)?.to_string();
    let status = text(&manifest, "status", run_dir)?.to_string();
    if status == "proposed" {
        return Err(UsageError(format!(
            "run {run_id} is not approved: run `segtune approve {} --by NAME` first",
            run_dir.display()
        ))
        .into());
    }
    // What is published is what the run wrote and ops approved.
    crate::manifest::verify_outputs(run_dir, &manifest)?;
    crate::output::create_dir_all_synced(to)?;
    let _lock = PublishLock::acquire(to)?;
    remove_stale_links(to);
    let relative = format!("history/{target_period}/{run_id}");
    let version = to.join(&relative);
    let previous = latest(to);
    if version.is_dir() {
        same_weights(run_dir, &version)?;
    }
    // The run's manifest and report say where it was published: written
    // last, and again by a publish that finds the job done but this not.
    let mark_published = |mut manifest: serde_json::Value| -> anyhow::Result<()> {
        if manifest["status"] == "published"
            && manifest["published"]["version"] == relative.as_str()
        {
            return Ok(());
        }
        manifest["status"] = "published".into();
        manifest["published"] = serde_json::json!({
            "to": to,
            "version": relative,
            "published_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        });
        rewrite_run(run_dir, &manifest, |_| Ok(()))
    };
    if previous.as_deref() == Some(relative.as_str()) {
        mark_published(manifest)?;
        return Ok(PublishSummary {
            version,
            target_period,
            run_id,
            changed: false,
            previous,
        });
    }
    if let Some(current) = &previous {
        let current_period = current.split('/').nth(1).unwrap_or_default();
        let older = match (Period::parse(&target_period), Period::parse(current_period)) {
            (Ok(new), Ok(old)) => new < old,
            _ => target_period.as_str() < current_period,
        };
        if older && !rollback {
            return Err(UsageError(format!(
                "`latest` is {current} and this run is for the older period {target_period}: pass --rollback to go back"
            ))
            .into());
        }
    }
    if !version.is_dir() {
        // A new version: written whole, synced, renamed into place. Never
        // overwritten afterwards.
        let staged = StagedDir::create(&version, false)?;
        fs_err::copy(
            run_dir.join("weights.parquet"),
            staged.path().join("weights.parquet"),
        )?;
        fs_err::copy(
            run_dir.join("weights.json"),
            staged.path().join("weights.json"),
        )?;
        write_json(
            &staged.path().join("weights.schema.json"),
            &weights_json_schema(),
        )?;
        // Which run this is, for downstream systems and audits: the same
        // for every publish of the run, so the version stays reproducible.
        write_json(
            &staged.path().join("version.json"),
            &serde_json::json!({
                "run_id": run_id,
                "evaluated_period": manifest["evaluated_period"],
                "target_period": target_period,
                "approved_by": manifest["approval"]["approved_by"],
                "approved_at": manifest["approval"]["approved_at"],
                "overrides_sha256": manifest["approval"]["overrides_sha256"],
                "program_version": manifest["program_version"],
            }),
        )?;
        staged.commit()?;
    }
    if std::env::var_os("SEGTUNE_FAIL_BEFORE_LATEST").is_some() {
        anyhow::bail!("injected failure before switching `latest` (SEGTUNE_FAIL_BEFORE_LATEST)");
    }
    crate::fault::point("before-latest");
    // Switch `latest`: a new link renamed over the old one.
    let link = to.join(format!(".latest.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&relative, &link)
        .with_context(|| format!("cannot create `{}`", link.display()))?;
    fs_err::rename(&link, to.join("latest"))?;
    std::fs::File::open(to)?.sync_all()?;
    crate::fault::point("after-latest");
    mark_published(manifest)?;
    Ok(PublishSummary {
        version,
        target_period,
        run_id,
        changed: true,
        previous,
    })
}
