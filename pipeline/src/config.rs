//! The run configuration: one TOML file, resolved once into [`RunSettings`].
//!
//! The file is a serde struct with kebab-case keys and `Option` fields
//! ([`RawConfig`]); [`RunSettings::resolve`] applies the documented defaults
//! and the command-line and environment overrides (command line, then
//! environment, then file, then default) and checks every value, collecting every problem with the
//! key and line it comes from. Unknown keys and wrong types are refused by the
//! TOML reader itself, which names the key and the line. Relative paths are
//! relative to the folder of the configuration file, so a run folder and its
//! inputs can be moved together. `pipeline/segtune.example.toml` documents
//! every key with its default.

use std::fmt;
use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use segtune_data::Period;
use segtune_models::features::{Scaling, Transform};
use serde::{Deserialize, Serialize};

/// Default seed of every random choice of a run.
pub const DEFAULT_SEED: u64 = 0;
/// Default margin rate: the vendor's margin on one unit of partner revenue.
pub const DEFAULT_MARGIN_RATE: f64 = 0.30;
/// Default column whose total gives `share_revenue`.
pub const DEFAULT_REVENUE_COLUMN: &str = "revenue_12m";
/// Default sweep of k: from.
pub const DEFAULT_K_MIN: usize = 3;
/// Default sweep of k: to.
pub const DEFAULT_K_MAX: usize = 6;
/// Default gate on the smallest segment's share.
pub const DEFAULT_MIN_SHARE: f64 = 0.02;
/// Default gate on stability.
pub const DEFAULT_MIN_STABILITY: f64 = 0.8;
/// Default silhouette sample.
pub const DEFAULT_SILHOUETTE_SAMPLE: usize = 10_000;
/// Default bootstrap resamples.
pub const DEFAULT_BOOTSTRAP: usize = 20;
/// Default continuity threshold.
pub const DEFAULT_CONTINUITY_THRESHOLD: f64 = 1.0;
/// Default partners per bootstrap resample.
pub const DEFAULT_BOOTSTRAP_SIZE: usize = 20_000;
/// Default fewest partners per arm for a lift estimate.
pub const DEFAULT_MIN_N_PER_ARM: usize = 30;
/// Default false discovery rate for `significant`.
pub const DEFAULT_FDR: f64 = 0.10;
/// Default sample-ratio p-value below which a segment's evidence is refused.
pub const DEFAULT_SRM_P_THRESHOLD: f64 = 0.001;
/// Default lowest weight of a scheme.
pub const DEFAULT_FLOOR: f64 = 0.05;
/// Default forgetting factor of the previous posterior.
pub const DEFAULT_FORGETTING: f64 = 0.5;
/// Default largest change of a weight per period.
pub const DEFAULT_MAX_STEP: f64 = 0.15;
/// Default posterior draws.
pub const DEFAULT_DRAWS: usize = 4000;
/// Default holdout share.
pub const DEFAULT_HOLDOUT_SHARE: f64 = 0.10;

/// The file as written. Every field is optional here; required ones are
/// checked in [`RunSettings::resolve`] so that all problems are reported at once.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawConfig {
    /// The evaluated period, e.g. `2026-Q3` (required).
    pub period: Option<String>,
    /// The period segments and weights are proposed for (default: the next one).
    pub target_period: Option<String>,
    /// Seed of every random choice (default 0).
    pub seed: Option<u64>,
    /// Margin rate in [0, 1] (default 0.30).
    pub margin_rate: Option<f64>,
    /// Input tables.
    pub inputs: Option<RawInputs>,
    /// Feature columns.
    pub features: Option<RawFeatures>,
    /// Outcomes to evaluate.
    pub outcome: Option<Vec<RawOutcome>>,
    /// k-means.
    pub segments: Option<RawSegments>,
    /// Lift estimation.
    pub evaluation: Option<RawEvaluation>,
    /// Weights and the next draw.
    pub tuning: Option<RawTuning>,
    /// Rule segments, evaluated in order before clustering.
    pub rules: Option<Vec<RawRule>>,
    /// Naming rules for k-means segments (default: the built-in ones).
    pub names: Option<Vec<RawName>>,
    /// What inputs segtune refuses to read.
    pub limits: Option<RawLimits>,
}

/// `[limits]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawLimits {
    /// Most rows of one input table, all its part files together.
    pub max_rows: Option<u64>,
    /// Most columns of one input file.
    pub max_columns: Option<usize>,
    /// Longest text value (partner ids, categorical values, scheme ids), in bytes.
    pub max_string_length: Option<usize>,
}

/// Default `limits.max-rows`.
pub const DEFAULT_MAX_ROWS: u64 = 50_000_000;
/// Default `limits.max-columns`.
pub const DEFAULT_MAX_COLUMNS: usize = 1_000;
/// Default `limits.max-string-length` (bytes).
pub const DEFAULT_MAX_STRING_LENGTH: usize = 1_024;

/// Resolved input limits: an input beyond one is refused (exit 3) before it
/// is decoded (rows, columns: from the Parquet footers) or as soon as a
/// value is read (string length), not after memory has run out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitSettings {
    /// Most rows per input table.
    pub max_rows: u64,
    /// Most columns per input file.
    pub max_columns: usize,
    /// Longest text value, in bytes.
    pub max_string_length: usize,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            max_rows: DEFAULT_MAX_ROWS,
            max_columns: DEFAULT_MAX_COLUMNS,
            max_string_length: DEFAULT_MAX_STRING_LENGTH,
        }
    }
}

impl LimitSettings {
    /// Whether these are the defaults (left out of a run's resolved
    /// configuration then, so that run ids from before limits stay).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// One `[[names]]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawName {
    /// The segment name (required).
    pub name: Option<String>,
    /// Condition over the segment's profile (required).
    pub when: Option<String>,
}

/// One `[[rules]]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawRule {
    /// Rule name (required): the segment's source is `rule:<name>`.
    pub name: Option<String>,
    /// Condition over raw column values (required).
    pub condition: Option<String>,
    /// Segment name for people (default: the rule name).
    pub segment_name: Option<String>,
}

/// `[segments]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawSegments {
    /// A fixed number of k-means segments: skips the sweep (default: sweep).
    pub k: Option<usize>,
    /// Smallest k of the sweep (default 3).
    pub k_min: Option<usize>,
    /// Largest k of the sweep (default 6).
    pub k_max: Option<usize>,
    /// k to use when no k passes the gates (default: none, exit 4).
    pub fallback_k: Option<usize>,
    /// Gate: smallest segment's share of the clustered partners (default 0.02).
    pub min_share: Option<f64>,
    /// Gate: bootstrap stability, mean adjusted Rand index (default 0.8).
    pub min_stability: Option<f64>,
    /// Rows in the silhouette sample (default 10,000).
    pub silhouette_sample: Option<usize>,
    /// Bootstrap resamples for stability (default 20).
    pub bootstrap: Option<usize>,
    /// Partners per bootstrap resample (default 20,000).
    pub bootstrap_size: Option<usize>,
    /// Largest distance (previous run's scaled space) at which a segment
    /// keeps a previous segment's id (default 1.0).
    pub continuity_threshold: Option<f64>,
    /// Population stability index above which a feature's drift is flagged (default 0.2).
    pub drift_threshold: Option<f64>,
    /// k-means++ restarts (default 3).
    pub restarts: Option<usize>,
    /// Iteration cap per restart (default 300).
    pub max_iterations: Option<u64>,
    /// Tolerance on centroid movement (default 1e-4).
    pub tolerance: Option<f64>,
    /// Number type of the rows in Lloyd's iterations: "f64" (default) or "f32".
    pub precision: Option<segtune_models::segmentation::Precision>,
}

/// `[evaluation]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawEvaluation {
    /// Fewest partners per arm for an estimate (default 30).
    pub min_n_per_arm: Option<usize>,
    /// q-value at or below which a cell is significant (default 0.10).
    pub fdr: Option<f64>,
    /// The outcome that drives tuning (default: the first `[[outcome]]`).
    pub tune_outcome: Option<String>,
    /// Sample-ratio p-value below which a segment is not tuned (default 0.001).
    pub srm_p_threshold: Option<f64>,
    /// Bootstrap resamples per cell for bootstrap intervals (default 0: off).
    pub bootstrap: Option<usize>,
}

/// `[tuning]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawTuning {
    /// Scheme ids (default: those in the assignments, holdout excluded).
    pub schemes: Option<Vec<String>>,
    /// Lowest weight of any scheme (default 0.05).
    pub floor: Option<f64>,
    /// Share of each segment held out next period (default 0.10).
    pub holdout_share: Option<f64>,
    /// Weights without evidence, by scheme id (default: equal).
    pub initial_weights: Option<std::collections::BTreeMap<String, f64>>,
    /// Forgetting factor in (0, 1] (default 0.5).
    pub forgetting: Option<f64>,
    /// Largest change of a weight per period (default 0.15).
    pub max_step: Option<f64>,
    /// Posterior draws for the probability of being best (default 4000).
    pub draws: Option<usize>,
    /// Highest weight per scheme, every segment.
    pub caps: Option<std::collections::BTreeMap<String, f64>>,
    /// Fixed weights per scheme, every segment.
    pub pinned: Option<std::collections::BTreeMap<String, f64>>,
    /// Schemes switched off, every segment.
    pub off: Option<Vec<String>>,
    /// Per-segment caps, pins and switches.
    pub segment: Option<Vec<RawSegmentTuning>>,
    /// `fixed` (default) or `recommended` (from power, within the bounds).
    pub holdout_policy: Option<String>,
    /// Lowest recommended holdout share (default 0.05).
    pub holdout_min: Option<f64>,
    /// Highest recommended holdout share (default 0.30).
    pub holdout_max: Option<f64>,
    /// Most consecutive periods a partner may be held out (default: no cap).
    pub max_consecutive_holdouts: Option<u32>,
}

/// One `[[tuning.segment]]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawSegmentTuning {
    /// Segment id (required).
    pub id: Option<u32>,
    /// Highest weight per scheme in this segment.
    pub caps: Option<std::collections::BTreeMap<String, f64>>,
    /// Fixed weights per scheme in this segment.
    pub pinned: Option<std::collections::BTreeMap<String, f64>>,
    /// Schemes switched off in this segment.
    pub off: Option<Vec<String>>,
    /// This segment's holdout share (over the policy).
    pub holdout_share: Option<f64>,
}

/// `[inputs]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawInputs {
    /// Partners table (required).
    pub partners: Option<PathBuf>,
    /// Assignments of the evaluated period.
    pub assignments: Option<PathBuf>,
    /// Outcomes of the evaluated period.
    pub outcomes: Option<PathBuf>,
    /// The previous run's folder.
    pub previous_run: Option<PathBuf>,
    /// Strategic partners (a `partner_id` table): never held out, never in lift.
    pub strategic: Option<PathBuf>,
}

/// `[features]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawFeatures {
    /// Numeric feature columns (default: every numeric column but `partner_id`).
    pub numeric: Option<Vec<String>>,
    /// Categorical columns (default: none).
    pub categorical: Option<Vec<String>>,
    /// Revenue column for `share_revenue` (default `revenue_12m`).
    pub revenue: Option<String>,
    /// Transform per numeric column: "none", "log1p", "rank" or
    /// `{ winsorise = [low, high] }` (default: "none").
    pub transforms: Option<BTreeMap<String, RawTransform>>,
    /// Weight per numeric column after scaling (default 1).
    pub weights: Option<BTreeMap<String, f64>>,
    /// Categorical columns that enter the clustering one-hot, with the weight
    /// of each level's 0/1 column (default: none; the others are kept for
    /// rules and the report).
    pub one_hot: Option<BTreeMap<String, f64>>,
    /// "standard" (mean, standard deviation) or "robust" (median, IQR) (default "standard").
    pub scaling: Option<RawScaling>,
    /// Add a 0/1 column for each feature with missing values (default false).
    pub missing_indicators: Option<bool>,
}

/// A transform as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawTransform {
    /// "none", "log1p" or "rank".
    Named(String),
    /// `{ winsorise = [low, high] }`.
    Winsorise {
        /// Lower and upper quantile.
        winsorise: [f64; 2],
    },
}

/// Scaling as written in the file.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawScaling {
    /// Mean and standard deviation.
    Standard,
    /// Median and interquartile range.
    Robust,
}

/// One `[[outcome]]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawOutcome {
    /// Outcome column in the outcomes table (required).
    pub name: Option<String>,
    /// Pre-period covariate column (default: none).
    pub covariate: Option<String>,
    /// Money per unit of outcome (default: the margin rate).
    pub value_per_unit: Option<f64>,
    /// Smallest lift worth detecting, outcome units per partner (default: none).
    pub min_effect: Option<f64>,
}

/// Overrides from the command line or the environment.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Replaces `period`; the target period is then the next one (the
    /// file's `target-period` belongs to the file's period, and is kept
    /// only when the period is the file's).
    pub period: Option<String>,
    /// Replaces `target-period`.
    pub target_period: Option<String>,
    /// Replaces `inputs.partners`.
    pub partners: Option<PathBuf>,
    /// Replaces `inputs.assignments`.
    pub assignments: Option<PathBuf>,
    /// Replaces `inputs.outcomes`.
    pub outcomes: Option<PathBuf>,
    /// Replaces `inputs.previous-run`.
    pub previous_run: Option<PathBuf>,
    /// Replaces `seed`.
    pub seed: Option<u64>,
}

/// Resolved input paths (absolute or relative to the working directory).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InputPaths {
    /// Partners table: a file or a folder of part files.
    pub partners: PathBuf,
    /// Assignments of the evaluated period.
    pub assignments: Option<PathBuf>,
    /// Outcomes of the evaluated period.
    pub outcomes: Option<PathBuf>,
    /// The previous run's folder.
    pub previous_run: Option<PathBuf>,
    /// Strategic partners: never held out, never counted in lift.
    pub strategic: Option<PathBuf>,
}

/// Resolved feature settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FeatureSettings {
    /// Numeric columns; `None` means every numeric column of the partners table.
    pub numeric: Option<Vec<String>>,
    /// Categorical columns.
    pub categorical: Vec<String>,
    /// Revenue column.
    pub revenue: String,
    /// Transform per numeric column (absent: none).
    pub transforms: BTreeMap<String, Transform>,
    /// Weight per numeric column (absent: 1).
    pub weights: BTreeMap<String, f64>,
    /// One-hot categorical columns with their weight.
    pub one_hot: BTreeMap<String, f64>,
    /// Scaling.
    pub scaling: Scaling,
    /// Missing-indicator columns.
    pub missing_indicators: bool,
}

/// Resolved k-means settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SegmentSettings {
    /// A fixed k (no sweep).
    pub k: Option<usize>,
    /// Sweep from.
    pub k_min: usize,
    /// Sweep to.
    pub k_max: usize,
    /// k when no k passes the gates.
    pub fallback_k: Option<usize>,
    /// Gate on the smallest share.
    pub min_share: f64,
    /// Gate on stability.
    pub min_stability: f64,
    /// Silhouette sample size.
    pub silhouette_sample: usize,
    /// Bootstrap resamples.
    pub bootstrap: usize,
    /// Rows per resample.
    pub bootstrap_size: usize,
    /// Continuity threshold.
    pub continuity_threshold: f64,
    /// Drift warning threshold (PSI).
    pub drift_threshold: f64,
    /// Restarts.
    pub restarts: usize,
    /// Iteration cap.
    pub max_iterations: u64,
    /// Tolerance.
    pub tolerance: f64,
    /// Rows' number type in Lloyd's iterations; left out of the resolved
    /// configuration (and so of the run id) when f64, the default.
    #[serde(default, skip_serializing_if = "is_f64")]
    pub precision: segtune_models::segmentation::Precision,
}

fn is_f64(precision: &segtune_models::segmentation::Precision) -> bool {
    *precision == segtune_models::segmentation::Precision::F64
}

/// Resolved lift settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvaluationSettings {
    /// Fewest partners per arm.
    pub min_n_per_arm: usize,
    /// Significance threshold on q-values.
    pub fdr: f64,
    /// The outcome that drives tuning (`None` when no outcome is configured).
    pub tune_outcome: Option<String>,
    /// Sample-ratio p-value below which a segment is not tuned.
    pub srm_p_threshold: f64,
    /// Bootstrap resamples per cell (0: no bootstrap intervals).
    pub bootstrap: usize,
}

/// Resolved tuning settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TuningSettings {
    /// Configured scheme ids (`None`: take them from the assignments).
    pub schemes: Option<Vec<String>>,
    /// Floor per scheme.
    pub floor: f64,
    /// Holdout share next period.
    pub holdout_share: f64,
    /// Initial weights by scheme id (empty: equal).
    pub initial_weights: std::collections::BTreeMap<String, f64>,
    /// Forgetting factor of the previous posterior.
    pub forgetting: f64,
    /// Largest change of a weight per period.
    pub max_step: f64,
    /// Posterior draws for the probability of being best.
    pub draws: usize,
    /// Caps, pins and switches for every segment.
    pub rules: SchemeRules,
    /// Per segment id, on top of `rules`.
    pub segments: std::collections::BTreeMap<u32, SchemeRules>,
    /// How each segment's holdout share is set.
    pub holdout_policy: HoldoutPolicy,
    /// Holdout shares fixed per segment id (over the policy).
    pub segment_holdout: std::collections::BTreeMap<u32, f64>,
    /// Most consecutive periods a partner may be held out.
    pub max_consecutive_holdouts: Option<u32>,
}

/// How each segment's holdout share is set for the next draw.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldoutPolicy {
    /// `tuning.holdout-share` everywhere.
    Fixed,
    /// The share power.parquet recommends for the tuning outcome, within
    /// [min, max]; `max` where the minimum effect is unreachable.
    Recommended {
        /// Lowest share.
        min: f64,
        /// Highest share.
        max: f64,
    },
}

/// Caps, pins and switched-off schemes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SchemeRules {
    /// Highest weight by scheme.
    pub caps: std::collections::BTreeMap<String, f64>,
    /// Fixed weight by scheme.
    pub pinned: std::collections::BTreeMap<String, f64>,
    /// Schemes at weight 0.
    pub off: std::collections::BTreeSet<String>,
}

/// Resolves caps, pins and switches under `key`, with the problems found.
fn scheme_rules(
    key: &str,
    caps: Option<std::collections::BTreeMap<String, f64>>,
    pinned: Option<std::collections::BTreeMap<String, f64>>,
    off: Option<Vec<String>>,
    schemes: Option<&[String]>,
) -> (SchemeRules, Vec<(String, String)>) {
    let rules = SchemeRules {
        caps: caps.unwrap_or_default(),
        pinned: pinned.unwrap_or_default(),
        off: off.unwrap_or_default().into_iter().collect(),
    };
    let mut problems = Vec::new();
    for (name, map) in [("caps", &rules.caps), ("pinned", &rules.pinned)] {
        for (scheme, value) in map {
            if !(0.0..=1.0).contains(value) {
                problems.push((
                    format!("{key}.{name}"),
                    format!("`{scheme}` has {value}; a weight is in [0, 1]"),
                ));
            }
        }
    }
    for scheme in rules
        .caps
        .keys()
        .chain(rules.pinned.keys())
        .chain(&rules.off)
    {
        if schemes.is_some_and(|schemes| !schemes.contains(scheme)) {
            problems.push((
                key.to_string(),
                format!("`{scheme}` is not in tuning.schemes"),
            ));
        }
        if rules.off.contains(scheme) && rules.pinned.contains_key(scheme) {
            problems.push((
                key.to_string(),
                format!("`{scheme}` is both pinned and switched off"),
            ));
        }
    }
    (rules, problems)
}

impl TuningSettings {
    /// The limits of `scheme` in `segment`: the segment's own rules over the
    /// program's.
    pub fn limits(&self, segment: u32, scheme: &str) -> segtune_models::tuning::SchemeLimits {
        self.limits_under(self.segments.get(&segment), scheme)
    }

    /// What stops these limits from giving weights to `schemes` (the
    /// schemes to weigh), by where it is: `None` for the program's limits,
    /// a segment id for a segment's own. A scheme capped below the floor
    /// (the floor would win, silently), and limits whose lower bounds
    /// (floors and pins) sum above 1 or whose upper bounds (caps and pins;
    /// 0 when switched off) sum below it. Checked before any work, by
    /// `validate` as by `run`, and for `approve --overrides`.
    pub fn unmet(&self, schemes: &[String]) -> Vec<(Option<u32>, String)> {
        let places = std::iter::once(None).chain(self.segments.keys().map(|id| Some(*id)));
        let mut found: Vec<(Option<u32>, String)> = Vec::new();
        for place in places {
            let own = place.and_then(|id| self.segments.get(&id));
            let limits: Vec<_> = schemes
                .iter()
                .map(|scheme| self.limits_under(own, scheme))
                .collect();
            let mut messages = Vec::new();
            for (scheme, limit) in schemes.iter().zip(&limits) {
                if !limit.off && limit.pinned.is_none() && limit.cap < limit.floor {
                    messages.push(format!(
                        "`{scheme}` is capped at {}, below the floor of {}: switch it off for a weight of 0, or lower tuning.floor",
                        limit.cap, limit.floor
                    ));
                }
            }
            // Each scheme's bounds with no previous weights, in words.
            let listed =
                |part: &dyn Fn(&segtune_models::tuning::SchemeLimits) -> Option<String>| {
                    schemes
                        .iter()
                        .zip(&limits)
                        .filter_map(|(scheme, limit)| Some(format!("{scheme} {}", part(limit)?)))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
            let bounds = segtune_models::tuning::bounds(&limits, None, self.max_step);
            let lower: f64 = bounds.iter().map(|b| b.0).sum();
            let upper: f64 = bounds.iter().map(|b| b.1).sum();
            const SLACK: f64 = 1e-9;
            if lower > 1.0 + SLACK {
                let pinned = listed(&|l| l.pinned.filter(|_| !l.off).map(|w| w.to_string()));
                messages.push(format!(
                    "the least the {} schemes can get sums to {lower:.3}, more than 1 ({}floor {} for each {})",
                    schemes.len(),
                    if pinned.is_empty() {
                        String::new()
                    } else {
                        format!("pinned: {pinned}; ")
                    },
                    self.floor,
                    if pinned.is_empty() { "scheme" } else { "of the others" },
                ));
            } else if upper < 1.0 - SLACK {
                messages.push(format!(
                    "the most the {} schemes can get sums to {upper:.3}, less than 1 ({})",
                    schemes.len(),
                    listed(&|l| Some(if l.off {
                        "off".to_string()
                    } else if let Some(w) = l.pinned {
                        format!("pinned {w}")
                    } else {
                        format!("up to {}", l.cap.max(l.floor))
                    })),
                ));
            }
            for message in messages {
                // A segment's own entry is named only for what it adds.
                if !found.iter().any(|(p, m)| p.is_none() && *m == message) {
                    found.push((place, message));
                }
            }
        }
        found
    }

    /// Scheme ids these settings name (caps, pins, switches, initial
    /// weights; the program's and each segment's) that are not in
    /// `schemes`, by where they are named (`None`: the program).
    pub fn unknown_schemes(&self, schemes: &[String]) -> Vec<(Option<u32>, &'static str, String)> {
        let mut found = Vec::new();
        let places = std::iter::once((None, &self.rules))
            .chain(self.segments.iter().map(|(id, rules)| (Some(*id), rules)));
        for (place, rules) in places {
            for (key, named) in [
                ("caps", rules.caps.keys().collect::<Vec<_>>()),
                ("pinned", rules.pinned.keys().collect()),
                ("off", rules.off.iter().collect()),
            ] {
                for scheme in named {
                    if !schemes.contains(scheme) {
                        found.push((place, key, scheme.clone()));
                    }
                }
            }
        }
        for scheme in self.initial_weights.keys() {
            if !schemes.contains(scheme) {
                found.push((None, "initial-weights", scheme.clone()));
            }
        }
        found
    }

    fn limits_under(
        &self,
        own: Option<&SchemeRules>,
        scheme: &str,
    ) -> segtune_models::tuning::SchemeLimits {
        let cap = own
            .and_then(|r| r.caps.get(scheme))
            .or_else(|| self.rules.caps.get(scheme))
            .copied();
        let pinned = own
            .and_then(|r| r.pinned.get(scheme))
            .or_else(|| self.rules.pinned.get(scheme))
            .copied();
        let off = own.is_some_and(|r| r.off.contains(scheme)) || self.rules.off.contains(scheme);
        segtune_models::tuning::SchemeLimits {
            floor: self.floor,
            cap: cap.unwrap_or(1.0),
            pinned,
            off,
        }
    }
}

/// One resolved outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutcomeSettings {
    /// Column name.
    pub name: String,
    /// Pre-period covariate column.
    pub covariate: Option<String>,
    /// Money per unit.
    pub value_per_unit: f64,
    /// Smallest lift worth detecting (outcome units per partner), for power.
    pub min_effect: Option<f64>,
}

/// Everything a run needs, resolved and checked.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSettings {
    /// The configuration file.
    #[serde(skip)]
    pub config_path: PathBuf,
    /// The evaluated period.
    pub period: String,
    /// The target period.
    pub target_period: String,
    /// Seed.
    pub seed: u64,
    /// Margin rate.
    pub margin_rate: f64,
    /// Inputs.
    pub inputs: InputPaths,
    /// Features.
    pub features: FeatureSettings,
    /// Outcomes.
    pub outcomes: Vec<OutcomeSettings>,
    /// k-means.
    pub segments: SegmentSettings,
    /// Lift.
    pub evaluation: EvaluationSettings,
    /// Tuning.
    pub tuning: TuningSettings,
    /// Rule segments, in order.
    pub rules: Vec<RuleSettings>,
    /// Naming rules, in order.
    pub names: Vec<NameRule>,
    /// Input limits (left out of the resolved configuration when default).
    #[serde(default, skip_serializing_if = "LimitSettings::is_default")]
    pub limits: LimitSettings,
}

/// One naming rule: a name and a condition over a segment's profile (each
/// feature's centroid value, in SDs from the average partner).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NameRule {
    /// The name it gives.
    pub name: String,
    /// The condition.
    pub when: String,
    /// Configured (an unknown column is an error) or built in (skipped).
    pub configured: bool,
}

/// The built-in naming rules, for the usual channel features; a rule whose
/// columns a configuration lacks is skipped.
pub const DEFAULT_NAMES: [(&str, &str); 4] = [
    ("Top performers", "revenue_12m > 0.8"),
    ("Growth partners", "revenue_growth > 0.6"),
    ("Low engagement", "portal_logins_90d < -0.4"),
    (
        "Steady contributors",
        "tenure_months > 0.2 && revenue_12m > -0.2",
    ),
];

/// One resolved rule.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuleSettings {
    /// Rule name.
    pub name: String,
    /// Segment name for people.
    pub segment_name: String,
    /// Condition.
    pub condition: String,
}

impl RunSettings {
    /// The tuning limits checked against the schemes to weigh:
    /// `tuning.schemes`, else `from_assignments` (the schemes in the
    /// assignments, `holdout` aside). A cap below the floor, or limits that
    /// cannot sum to 1, is a configuration error naming the key and its
    /// line; `validate` and `run` check it as soon as the assignments are
    /// read. A scheme the limits name that the assignments do not have is a
    /// warning (returned, to log and show): a typo leaves its limit doing
    /// nothing, but a scheme switched off stays out of the draws, so the
    /// next period's assignments lack it by design. Nothing to check
    /// without schemes (the tuner then says what is missing).
    pub fn check_tuning(
        &self,
        from_assignments: Option<&[String]>,
    ) -> Result<Vec<String>, ConfigError> {
        let schemes: Vec<String> = match (&self.tuning.schemes, from_assignments) {
            (Some(schemes), _) => schemes.clone(),
            (None, Some(found)) => found
                .iter()
                .filter(|s| s.as_str() != segtune_data::HOLDOUT)
                .cloned()
                .collect(),
            (None, None) => return Ok(Vec::new()),
        };
        if schemes.is_empty() {
            return Ok(Vec::new());
        }
        let source = std::fs::read_to_string(&self.config_path).unwrap_or_default();
        // The key of a segment's own limits: its `[[tuning.segment]]` entry.
        let place_key = |place: Option<u32>| -> String {
            let Some(id) = place else {
                return "tuning".to_string();
            };
            segment_entry(&source, id).map_or_else(
                || format!("tuning.segment (id {id})"),
                |index| format!("tuning.segment.{index}"),
            )
        };
        let mut warnings = Vec::new();
        if self.tuning.schemes.is_none() {
            for (place, key, scheme) in self.tuning.unknown_schemes(&schemes) {
                let key = format!("{}.{key}", place_key(place));
                let parts: Vec<&str> = key.split('.').collect();
                let problem = ConfigProblem {
                    line: key_line(&source, &parts),
                    key,
                    message: format!(
                        "`{scheme}` is not a scheme of the assignments (they have: {}), so this limit does nothing this period: check the name",
                        schemes.join(", ")
                    ),
                };
                warnings.push(format!("`{}`, {problem}", self.config_path.display()));
            }
        }
        let problems: Vec<(String, String)> = self
            .tuning
            .unmet(&schemes)
            .into_iter()
            .map(|(place, message)| (place_key(place), message))
            .collect();
        if problems.is_empty() {
            Ok(warnings)
        } else {
            Err(self.invalid_in(&source, problems))
        }
    }

    /// A configuration error of problems found after reading the file (by
    /// dotted key, with what is wrong), each with its key's line.
    pub fn invalid(&self, problems: Vec<(String, String)>) -> ConfigError {
        let source = std::fs::read_to_string(&self.config_path).unwrap_or_default();
        self.invalid_in(&source, problems)
    }

    /// [`Self::invalid`] with the file's text already read.
    fn invalid_in(&self, source: &str, problems: Vec<(String, String)>) -> ConfigError {
        ConfigError::Invalid {
            path: self.config_path.clone(),
            problems: problems
                .into_iter()
                .map(|(key, message)| {
                    let parts: Vec<&str> = key.split('.').collect();
                    ConfigProblem {
                        line: key_line(source, &parts),
                        key,
                        message,
                    }
                })
                .collect(),
        }
    }
}

/// The index of the `[[tuning.segment]]` entry for segment `id`.
fn segment_entry(source: &str, id: u32) -> Option<usize> {
    let document = toml_edit::ImDocument::parse(source).ok()?;
    let entries = document
        .get("tuning")?
        .get("segment")?
        .as_array_of_tables()?;
    let index = entries
        .iter()
        .position(|entry| entry.get("id").and_then(|v| v.as_integer()) == Some(i64::from(id)));
    index
}

impl RunSettings {
    /// The settings a run used, from its manifest's `config` (input paths
    /// there are relative to the run folder).
    pub fn from_manifest(
        config: &serde_json::Value,
        run_dir: &Path,
    ) -> Result<Self, serde_json::Error> {
        let mut settings: Self = serde_json::from_value(config.clone())?;
        let resolve = |path: &mut PathBuf| *path = run_dir.join(&*path);
        resolve(&mut settings.inputs.partners);
        for path in [
            &mut settings.inputs.assignments,
            &mut settings.inputs.outcomes,
            &mut settings.inputs.previous_run,
            &mut settings.inputs.strategic,
        ]
        .into_iter()
        .flatten()
        {
            resolve(path);
        }
        settings.config_path = run_dir.join("manifest.json");
        Ok(settings)
    }

    /// The rules, parsed (they were checked when the settings were resolved).
    pub fn compiled_rules(&self) -> Result<Vec<crate::rules::Rule>, crate::rules::RuleError> {
        self.rules
            .iter()
            .map(|r| crate::rules::Rule::parse(&r.name, &r.segment_name, &r.condition))
            .collect()
    }
}

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigProblem {
    /// Dotted key, e.g. `inputs.partners`.
    pub key: String,
    /// 1-based line of the key, when it is in the file.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "key `{}` (line {}): {}", self.key, line, self.message),
            None => write!(f, "key `{}`: {}", self.key, self.message),
        }
    }
}

/// A configuration that cannot be used (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("failed to read configuration `{path}`")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Not valid TOML, an unknown key or a wrong type (the message has the key and line).
    #[error("invalid configuration `{path}`: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The TOML reader's message, with line and column.
        message: String,
    },
    /// Values that parse but cannot be used.
    #[error("invalid configuration `{path}`:\n{}", .problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem found.
        problems: Vec<ConfigProblem>,
    },
}

/// The 1-based line of a dotted key in `source` (numeric parts index arrays of tables).
pub fn key_line(source: &str, key: &[&str]) -> Option<usize> {
    let document = toml_edit::ImDocument::parse(source).ok()?;
    let mut table: &dyn toml_edit::TableLike = document.as_table();
    let mut span = None;
    let mut parts = key.iter().peekable();
    while let Some(part) = parts.next() {
        let (found_key, item) = table.get_key_value(part)?;
        span = found_key.span();
        match item {
            toml_edit::Item::ArrayOfTables(array) => {
                let index: usize = parts.next()?.parse().ok()?;
                let entry = array.get(index)?;
                span = entry.span().or(span);
                table = entry;
            }
            other => {
                if parts.peek().is_some() {
                    table = other.as_table_like()?;
                }
            }
        }
    }
    let offset = span?.start;
    Some(source[..offset.min(source.len())].matches('\n').count() + 1)
}

impl RunSettings {
    /// Reads and resolves a configuration file.
    pub fn load(path: &Path, overrides: &Overrides) -> Result<Self, ConfigError> {
        let source = fs_err::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_source(path, &source, overrides)
    }

    /// Resolves configuration text that came from `path`.
    pub fn from_source(
        path: &Path,
        source: &str,
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(source).map_err(|error| ConfigError::Parse {
            path: path.to_path_buf(),
            message: error.to_string().trim_end().to_string(),
        })?;
        Self::resolve(path, source, raw, overrides)
    }

    /// Applies defaults and overrides to a parsed file and checks every value.
    pub fn resolve(
        path: &Path,
        source: &str,
        raw: RawConfig,
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        match Self::resolve_lenient(path, source, raw, overrides) {
            (Some(settings), problems) if problems.is_empty() => Ok(settings),
            (_, problems) => Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                problems,
            }),
        }
    }

    /// Like [`RunSettings::resolve`], but returns the settings it could build
    /// (placeholders where a value was invalid) beside every problem, so that
    /// `validate` can still check the input data of a flawed configuration.
    pub fn resolve_lenient(
        path: &Path,
        source: &str,
        raw: RawConfig,
        overrides: &Overrides,
    ) -> (Option<Self>, Vec<ConfigProblem>) {
        let mut problems = Vec::new();
        let mut problem = |key: &str, message: String| {
            let parts: Vec<&str> = key.split('.').collect();
            problems.push(ConfigProblem {
                key: key.to_string(),
                line: key_line(source, &parts),
                message,
            });
        };
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let resolve_path = |p: &PathBuf| {
            if p.is_absolute() {
                p.clone()
            } else {
                base.join(p)
            }
        };

        let period_replaced = overrides
            .period
            .as_ref()
            .is_some_and(|period| raw.period.as_ref() != Some(period));
        let target_in_file = match (&overrides.target_period, period_replaced) {
            (Some(target), _) => Some(target.as_str()),
            (None, true) => None,
            (None, false) => raw.target_period.as_deref(),
        };
        let period = match overrides
            .period
            .as_deref()
            .or(raw.period.as_deref())
            .map(Period::parse)
        {
            None => {
                problem(
                    "period",
                    "is required (the evaluated period, e.g. \"2026-Q3\")".into(),
                );
                None
            }
            Some(Err(error)) => {
                problem("period", error.to_string());
                None
            }
            Some(Ok(period)) => Some(period),
        };
        let target_period = match (target_in_file.map(Period::parse), &period) {
            (Some(Err(error)), _) => {
                problem("target-period", error.to_string());
                None
            }
            (Some(Ok(target)), Some(evaluated)) => {
                if &target == evaluated {
                    problem("target-period", "must differ from `period`".into());
                }
                Some(target)
            }
            (None, Some(evaluated)) => {
                let next = evaluated.next();
                if next.is_none() {
                    problem("target-period", format!("is required: `{evaluated}` is neither YYYY-Qn nor YYYY-MM, so the next period cannot be derived"));
                }
                next
            }
            _ => None,
        };
        let margin_rate = raw.margin_rate.unwrap_or(DEFAULT_MARGIN_RATE);
        if !(0.0..=1.0).contains(&margin_rate) {
            problem(
                "margin-rate",
                format!("must be in [0, 1], got {margin_rate}"),
            );
        }

        let inputs = raw.inputs.unwrap_or_default();
        let partners = overrides
            .partners
            .clone()
            .or(inputs.partners.as_ref().map(&resolve_path));
        if partners.is_none() {
            problem(
                "inputs.partners",
                "is required (a Parquet file or a folder of part files)".into(),
            );
        }
        let assignments = overrides
            .assignments
            .clone()
            .or(inputs.assignments.as_ref().map(&resolve_path));
        let outcomes = overrides
            .outcomes
            .clone()
            .or(inputs.outcomes.as_ref().map(&resolve_path));
        let previous_run = overrides
            .previous_run
            .clone()
            .or(inputs.previous_run.as_ref().map(&resolve_path));
        let strategic = inputs.strategic.as_ref().map(&resolve_path);
        if period_replaced {
            // Another period with the file's inputs is last period's data
            // under a new name, unless the file's paths are that period's.
            let from_file = [
                (
                    "inputs.partners",
                    overrides.partners.is_none() && inputs.partners.is_some(),
                ),
                (
                    "inputs.assignments",
                    overrides.assignments.is_none() && inputs.assignments.is_some(),
                ),
                (
                    "inputs.outcomes",
                    overrides.outcomes.is_none() && inputs.outcomes.is_some(),
                ),
                (
                    "inputs.previous-run",
                    overrides.previous_run.is_none() && inputs.previous_run.is_some(),
                ),
            ];
            for (key, _) in from_file.iter().filter(|(_, file)| *file) {
                tracing::warn!(
                    "the period is {} from the command line or the environment, but `{key}` comes from the configuration file: check it is that period's (or give it too)",
                    overrides.period.as_deref().unwrap_or_default()
                );
            }
        }

        let features = raw.features.unwrap_or_default();
        let check_names = |key: &str, names: &[String], problem: &mut dyn FnMut(&str, String)| {
            let mut seen = std::collections::BTreeSet::new();
            for name in names {
                if name.is_empty() {
                    problem(key, "has an empty column name".into());
                } else if name == segtune_data::schema::PARTNER_ID {
                    problem(
                        key,
                        "may not list `partner_id` (it is the key, not a feature)".into(),
                    );
                } else if !seen.insert(name) {
                    problem(key, format!("lists `{name}` twice"));
                }
            }
        };
        if let Some(numeric) = &features.numeric {
            if numeric.is_empty() {
                problem(
                    "features.numeric",
                    "is empty: leave it out to use every numeric column".into(),
                );
            }
            check_names("features.numeric", numeric, &mut problem);
        }
        let categorical = features.categorical.unwrap_or_default();
        check_names("features.categorical", &categorical, &mut problem);
        if let Some(numeric) = &features.numeric {
            for name in numeric.iter().filter(|n| categorical.contains(n)) {
                problem(
                    "features.categorical",
                    format!("`{name}` is also listed in features.numeric"),
                );
            }
        }
        let revenue = features
            .revenue
            .unwrap_or_else(|| DEFAULT_REVENUE_COLUMN.to_string());
        let mut transforms = BTreeMap::new();
        for (name, raw) in features.transforms.unwrap_or_default() {
            let key = format!("features.transforms.{name}");
            let transform = match raw {
                RawTransform::Named(named) => match named.as_str() {
                    "none" => Transform::None,
                    "log1p" => Transform::Log1p,
                    "rank" => Transform::Rank,
                    other => {
                        problem(&key, format!("unknown transform `{other}`: use \"none\", \"log1p\", \"rank\" or {{ winsorise = [low, high] }}"));
                        continue;
                    }
                },
                RawTransform::Winsorise {
                    winsorise: [low, high],
                } => {
                    if !(0.0..=1.0).contains(&low) || !(0.0..=1.0).contains(&high) || low >= high {
                        problem(&key, format!("winsorise quantiles must satisfy 0 <= low < high <= 1, got [{low}, {high}]"));
                    }
                    Transform::Winsorise { low, high }
                }
            };
            if features
                .numeric
                .as_ref()
                .is_some_and(|numeric| !numeric.contains(&name))
            {
                problem(&key, format!("`{name}` is not in features.numeric"));
            }
            transforms.insert(name, transform);
        }
        let weights = features.weights.unwrap_or_default();
        for (name, weight) in &weights {
            let key = format!("features.weights.{name}");
            if !weight.is_finite() || *weight < 0.0 {
                problem(&key, format!("must be a finite number >= 0, got {weight}"));
            }
            if features
                .numeric
                .as_ref()
                .is_some_and(|numeric| !numeric.contains(name))
            {
                problem(&key, format!("`{name}` is not in features.numeric"));
            }
        }
        let one_hot = features.one_hot.unwrap_or_default();
        for (name, weight) in &one_hot {
            let key = format!("features.one-hot.{name}");
            if !weight.is_finite() || *weight < 0.0 {
                problem(&key, format!("must be a finite number >= 0, got {weight}"));
            }
            if !categorical.contains(name) {
                problem(&key, format!("`{name}` is not in features.categorical"));
            }
        }
        let scaling = match features.scaling {
            Some(RawScaling::Robust) => Scaling::Robust,
            _ => Scaling::Standard,
        };
        let missing_indicators = features.missing_indicators.unwrap_or(false);

        let segments = raw.segments.unwrap_or_default();
        let segment_settings = SegmentSettings {
            k: segments.k,
            k_min: segments.k_min.unwrap_or(DEFAULT_K_MIN),
            k_max: segments.k_max.unwrap_or(DEFAULT_K_MAX),
            fallback_k: segments.fallback_k,
            min_share: segments.min_share.unwrap_or(DEFAULT_MIN_SHARE),
            min_stability: segments.min_stability.unwrap_or(DEFAULT_MIN_STABILITY),
            silhouette_sample: segments
                .silhouette_sample
                .unwrap_or(DEFAULT_SILHOUETTE_SAMPLE),
            bootstrap: segments.bootstrap.unwrap_or(DEFAULT_BOOTSTRAP),
            bootstrap_size: segments.bootstrap_size.unwrap_or(DEFAULT_BOOTSTRAP_SIZE),
            continuity_threshold: segments
                .continuity_threshold
                .unwrap_or(DEFAULT_CONTINUITY_THRESHOLD),
            drift_threshold: segments.drift_threshold.unwrap_or(0.2),
            restarts: segments
                .restarts
                .unwrap_or(segtune_models::segmentation::DEFAULT_N_RUNS),
            max_iterations: segments
                .max_iterations
                .unwrap_or(segtune_models::segmentation::DEFAULT_MAX_N_ITERATIONS),
            tolerance: segments
                .tolerance
                .unwrap_or(segtune_models::segmentation::DEFAULT_TOLERANCE),
            precision: segments.precision.unwrap_or_default(),
        };
        for (key, k) in [
            ("segments.k", segment_settings.k),
            ("segments.fallback-k", segment_settings.fallback_k),
        ] {
            if let Some(k) = k {
                if !(1..=50).contains(&k) {
                    problem(key, format!("must be 1 to 50, got {k}"));
                }
            }
        }
        if !(2..=50).contains(&segment_settings.k_min)
            || !(2..=50).contains(&segment_settings.k_max)
        {
            problem(
                "segments.k-min",
                format!(
                    "the sweep must run within 2 to 50, got {} to {}",
                    segment_settings.k_min, segment_settings.k_max
                ),
            );
        } else if segment_settings.k_min > segment_settings.k_max {
            problem(
                "segments.k-max",
                format!(
                    "is below k-min ({} < {})",
                    segment_settings.k_max, segment_settings.k_min
                ),
            );
        }
        if let Some(fallback) = segment_settings.fallback_k {
            if segment_settings.k.is_none()
                && !(segment_settings.k_min..=segment_settings.k_max).contains(&fallback)
            {
                problem(
                    "segments.fallback-k",
                    format!(
                        "fallback-k = {fallback} is outside the sweep {}..={}",
                        segment_settings.k_min, segment_settings.k_max
                    ),
                );
            }
        }
        if !(0.0..=0.5).contains(&segment_settings.min_share) {
            problem(
                "segments.min-share",
                format!("must be in [0, 0.5], got {}", segment_settings.min_share),
            );
        }
        if !(-1.0..=1.0).contains(&segment_settings.min_stability) {
            problem(
                "segments.min-stability",
                format!("must be in [-1, 1], got {}", segment_settings.min_stability),
            );
        }
        if segment_settings.silhouette_sample < 2 {
            problem("segments.silhouette-sample", "must be at least 2".into());
        }
        if segment_settings.bootstrap_size < 2 {
            problem("segments.bootstrap-size", "must be at least 2".into());
        }
        if segment_settings.restarts == 0 {
            problem("segments.restarts", "must be at least 1".into());
        }
        if segment_settings.max_iterations == 0 {
            problem("segments.max-iterations", "must be at least 1".into());
        }
        if !segment_settings.tolerance.is_finite() || segment_settings.tolerance < 0.0 {
            problem(
                "segments.tolerance",
                format!(
                    "must be a finite number >= 0, got {}",
                    segment_settings.tolerance
                ),
            );
        }

        let raw_limits = raw.limits.unwrap_or_default();
        let limits = LimitSettings {
            max_rows: raw_limits.max_rows.unwrap_or(DEFAULT_MAX_ROWS),
            max_columns: raw_limits.max_columns.unwrap_or(DEFAULT_MAX_COLUMNS),
            max_string_length: raw_limits
                .max_string_length
                .unwrap_or(DEFAULT_MAX_STRING_LENGTH),
        };
        for (key, value) in [
            ("limits.max-rows", limits.max_rows),
            ("limits.max-columns", limits.max_columns as u64),
            ("limits.max-string-length", limits.max_string_length as u64),
        ] {
            if value == 0 {
                problem(key, "must be at least 1".into());
            }
        }

        let evaluation = raw.evaluation.unwrap_or_default();
        let fdr = evaluation.fdr.unwrap_or(DEFAULT_FDR);
        if !(fdr > 0.0 && fdr < 1.0) {
            problem("evaluation.fdr", format!("must be in (0, 1), got {fdr}"));
        }
        let srm_p_threshold = evaluation
            .srm_p_threshold
            .unwrap_or(DEFAULT_SRM_P_THRESHOLD);
        if !(0.0..1.0).contains(&srm_p_threshold) {
            problem(
                "evaluation.srm-p-threshold",
                format!("must be in [0, 1), got {srm_p_threshold}"),
            );
        }
        let bootstrap = evaluation.bootstrap.unwrap_or(0);
        if bootstrap != 0 && bootstrap < 100 {
            problem(
                "evaluation.bootstrap",
                format!("must be 0 (off) or at least 100 resamples, got {bootstrap}"),
            );
        }
        let min_n_per_arm = evaluation.min_n_per_arm.unwrap_or(DEFAULT_MIN_N_PER_ARM);
        if min_n_per_arm < 2 {
            problem(
                "evaluation.min-n-per-arm",
                format!("must be at least 2 (a variance needs two values), got {min_n_per_arm}"),
            );
        }

        let tuning = raw.tuning.unwrap_or_default();
        let floor = tuning.floor.unwrap_or(DEFAULT_FLOOR);
        if !(0.0..1.0).contains(&floor) {
            problem("tuning.floor", format!("must be in [0, 1), got {floor}"));
        }
        let holdout_share = tuning.holdout_share.unwrap_or(DEFAULT_HOLDOUT_SHARE);
        if !(0.0..1.0).contains(&holdout_share) {
            problem(
                "tuning.holdout-share",
                format!("must be in [0, 1), got {holdout_share}"),
            );
        }
        if let Some(schemes) = &tuning.schemes {
            if schemes.is_empty() {
                problem(
                    "tuning.schemes",
                    "is empty: leave it out to take the schemes from the assignments".into(),
                );
            }
            let mut seen = std::collections::BTreeSet::new();
            for scheme in schemes {
                if let Err(error) = segtune_data::SchemeId::try_new(scheme.as_str()) {
                    problem("tuning.schemes", error.to_string());
                } else if scheme == segtune_data::HOLDOUT {
                    problem(
                        "tuning.schemes",
                        "`holdout` is not a scheme (the holdout share is `tuning.holdout-share`)"
                            .into(),
                    );
                } else if !seen.insert(scheme) {
                    problem("tuning.schemes", format!("lists `{scheme}` twice"));
                }
            }
            if floor * schemes.len() as f64 > 1.0 {
                problem(
                    "tuning.floor",
                    format!(
                        "a floor of {floor} for each of {} schemes exceeds 1",
                        schemes.len()
                    ),
                );
            }
        }
        if tuning.schemes.is_none() && assignments.is_none() {
            problem(
                "tuning.schemes",
                "is required when there are no assignments to take the schemes from".into(),
            );
        }
        let initial_weights = tuning.initial_weights.unwrap_or_default();
        for (scheme, weight) in &initial_weights {
            if !weight.is_finite() || *weight < 0.0 {
                problem(
                    "tuning.initial-weights",
                    format!("`{scheme}` has weight {weight}; weights must be >= 0"),
                );
            }
            if let Some(schemes) = &tuning.schemes {
                if !schemes.contains(scheme) {
                    problem(
                        "tuning.initial-weights",
                        format!("`{scheme}` is not in tuning.schemes"),
                    );
                }
            }
        }
        if !initial_weights.is_empty() && initial_weights.values().sum::<f64>() <= 0.0 {
            problem("tuning.initial-weights", "the weights sum to 0".into());
        }
        let forgetting = tuning.forgetting.unwrap_or(DEFAULT_FORGETTING);
        if !(forgetting > 0.0 && forgetting <= 1.0) {
            problem(
                "tuning.forgetting",
                format!("must be in (0, 1] (1 keeps all evidence), got {forgetting}"),
            );
        }
        let max_step = tuning.max_step.unwrap_or(DEFAULT_MAX_STEP);
        if !(max_step > 0.0 && max_step <= 1.0) {
            problem(
                "tuning.max-step",
                format!("must be in (0, 1], got {max_step}"),
            );
        }
        let draws = tuning.draws.unwrap_or(DEFAULT_DRAWS);
        if draws < 100 {
            problem("tuning.draws", format!("must be at least 100, got {draws}"));
        }
        let schemes = tuning.schemes.as_deref();
        let (program_rules, found) =
            scheme_rules("tuning", tuning.caps, tuning.pinned, tuning.off, schemes);
        for (key, message) in found {
            problem(&key, message);
        }
        let mut segment_rules = std::collections::BTreeMap::new();
        let mut segment_holdout = std::collections::BTreeMap::new();
        let holdout_policy = match tuning.holdout_policy.as_deref() {
            None | Some("fixed") => HoldoutPolicy::Fixed,
            Some("recommended") => {
                let min = tuning.holdout_min.unwrap_or(0.05);
                let max = tuning.holdout_max.unwrap_or(0.30);
                if !(0.0 < min && min <= max && max <= 0.5) {
                    problem(
                        "tuning.holdout-min",
                        format!("holdout-min and holdout-max must satisfy 0 < min <= max <= 0.5, got {min} and {max}"),
                    );
                }
                HoldoutPolicy::Recommended { min, max }
            }
            Some(other) => {
                problem(
                    "tuning.holdout-policy",
                    format!("must be \"fixed\" or \"recommended\", got \"{other}\""),
                );
                HoldoutPolicy::Fixed
            }
        };
        if tuning.max_consecutive_holdouts == Some(0) {
            problem(
                "tuning.max-consecutive-holdouts",
                "must be at least 1 (leave it out for no cap)".into(),
            );
        }
        for (index, raw_segment) in tuning.segment.unwrap_or_default().into_iter().enumerate() {
            let key = format!("tuning.segment.{index}");
            let Some(id) = raw_segment.id else {
                problem(&key, "needs an `id` (the segment id)".into());
                continue;
            };
            if let Some(share) = raw_segment.holdout_share {
                if !(0.0..1.0).contains(&share) {
                    problem(
                        &format!("{key}.holdout-share"),
                        format!("must be in [0, 1), got {share}"),
                    );
                }
                segment_holdout.insert(id, share);
            }
            let (own, found) = scheme_rules(
                &key,
                raw_segment.caps,
                raw_segment.pinned,
                raw_segment.off,
                schemes,
            );
            for (key, message) in found {
                problem(&key, message);
            }
            if segment_rules.insert(id, own).is_some() {
                problem(&key, format!("segment {id} is configured twice"));
            }
        }

        let mut outcomes_settings = Vec::new();
        for (index, outcome) in raw.outcome.unwrap_or_default().into_iter().enumerate() {
            let key = format!("outcome.{index}");
            let Some(name) = outcome.name.filter(|n| !n.is_empty()) else {
                problem(&key, "needs a `name` (the outcome column)".into());
                continue;
            };
            if outcomes_settings
                .iter()
                .any(|o: &OutcomeSettings| o.name == name)
            {
                problem(&key, format!("outcome `{name}` is configured twice"));
            }
            let value_per_unit = outcome.value_per_unit.unwrap_or(margin_rate);
            if !value_per_unit.is_finite() || value_per_unit < 0.0 {
                problem(
                    &format!("{key}.value-per-unit"),
                    format!("must be a finite number >= 0, got {value_per_unit}"),
                );
            }
            if let Some(min_effect) = outcome.min_effect {
                if !(min_effect.is_finite() && min_effect > 0.0) {
                    problem(
                        &format!("{key}.min-effect"),
                        format!("must be a finite number > 0, got {min_effect}"),
                    );
                }
            }
            outcomes_settings.push(OutcomeSettings {
                name,
                covariate: outcome.covariate,
                value_per_unit,
                min_effect: outcome.min_effect,
            });
        }
        if !outcomes_settings.is_empty() && outcomes.is_none() {
            problem(
                "outcome",
                "outcomes are configured but `inputs.outcomes` is not".into(),
            );
        }
        if outcomes.is_some() && outcomes_settings.is_empty() {
            problem(
                "outcome",
                "`inputs.outcomes` is set but no [[outcome]] names a column to evaluate".into(),
            );
        }
        let mut rules = Vec::new();
        for (index, raw_rule) in raw.rules.unwrap_or_default().into_iter().enumerate() {
            let key = format!("rules.{index}");
            let Some(name) = raw_rule.name.filter(|n| !n.trim().is_empty()) else {
                problem(&key, "needs a `name`".into());
                continue;
            };
            if !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                problem(
                    &format!("{key}.name"),
                    format!("`{name}`: use letters, digits, `_` and `-` only"),
                );
            }
            if rules.iter().any(|r: &RuleSettings| r.name == name) {
                problem(
                    &format!("{key}.name"),
                    format!("rule `{name}` is defined twice"),
                );
            }
            let Some(condition) = raw_rule.condition else {
                problem(&key, format!("rule `{name}` needs a `condition`"));
                continue;
            };
            if let Err(error) = crate::rules::Rule::parse(&name, &name, &condition) {
                problem(&format!("{key}.condition"), error.to_string());
            }
            let segment_name = raw_rule.segment_name.unwrap_or_else(|| name.clone());
            rules.push(RuleSettings {
                name,
                segment_name,
                condition,
            });
        }
        let names = match raw.names {
            None => DEFAULT_NAMES
                .iter()
                .map(|(name, when)| NameRule {
                    name: (*name).into(),
                    when: (*when).into(),
                    configured: false,
                })
                .collect(),
            Some(raw_names) => {
                let mut names = Vec::new();
                for (index, raw_name) in raw_names.into_iter().enumerate() {
                    let key = format!("names.{index}");
                    let (Some(name), Some(when)) = (
                        raw_name.name.filter(|n| !n.trim().is_empty()),
                        raw_name.when,
                    ) else {
                        problem(&key, "needs a `name` and a `when`".into());
                        continue;
                    };
                    if let Err(error) = crate::rules::Rule::parse(&name, &name, &when) {
                        problem(&format!("{key}.when"), error.to_string());
                    }
                    if names.iter().any(|n: &NameRule| n.name == name) {
                        problem(&format!("{key}.name"), format!("`{name}` is given twice"));
                    }
                    names.push(NameRule {
                        name,
                        when,
                        configured: true,
                    });
                }
                names
            }
        };
        let tune_outcome = evaluation
            .tune_outcome
            .clone()
            .or_else(|| outcomes_settings.first().map(|o| o.name.clone()));
        if let Some(name) = &evaluation.tune_outcome {
            if !outcomes_settings.iter().any(|o| &o.name == name) {
                problem(
                    "evaluation.tune-outcome",
                    format!("`{name}` is not a configured [[outcome]]"),
                );
            }
        }

        let Some(partners) = partners else {
            return (None, problems);
        };
        let settings = RunSettings {
            config_path: path.to_path_buf(),
            period: period.map_or_else(|| "?".to_string(), |p| p.to_string()),
            target_period: target_period.map_or_else(|| "?".to_string(), |p| p.to_string()),
            seed: overrides.seed.or(raw.seed).unwrap_or(DEFAULT_SEED),
            margin_rate,
            inputs: InputPaths {
                partners,
                assignments,
                outcomes,
                previous_run,
                strategic,
            },
            features: FeatureSettings {
                numeric: features.numeric,
                categorical,
                revenue,
                transforms,
                weights,
                one_hot,
                scaling,
                missing_indicators,
            },
            outcomes: outcomes_settings,
            segments: segment_settings,
            evaluation: EvaluationSettings {
                min_n_per_arm,
                fdr,
                tune_outcome,
                srm_p_threshold,
                bootstrap,
            },
            tuning: TuningSettings {
                schemes: tuning.schemes,
                floor,
                holdout_share,
                initial_weights,
                forgetting,
                max_step,
                draws,
                rules: program_rules,
                segments: segment_rules,
                holdout_policy,
                segment_holdout,
                max_consecutive_holdouts: tuning.max_consecutive_holdouts,
            },
            rules,
            names,
            limits,
        };
        (Some(settings), problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(source: &str) -> Result<RunSettings, ConfigError> {
        RunSettings::from_source(
            Path::new("/tmp/cfg/segtune.toml"),
            source,
            &Overrides::default(),
        )
    }

    #[test]
    fn defaults_fill_every_optional_key() {
        let settings =
            resolve("period = \"2026-Q3\"\n[inputs]\npartners = \"p.parquet\"\nassignments = \"a.parquet\"\n").expect("valid");
        assert_eq!(settings.target_period, "2026-Q4");
        assert_eq!(settings.seed, DEFAULT_SEED);
        assert_eq!(settings.margin_rate, DEFAULT_MARGIN_RATE);
        assert_eq!(settings.inputs.partners, Path::new("/tmp/cfg/p.parquet"));
        assert_eq!(settings.features.revenue, "revenue_12m");
        assert!(settings.features.numeric.is_none());
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let error =
            resolve("period = \"2026-Q3\"\n\n[inputs]\npartners = \"p\"\npartner = \"q\"\n")
                .expect_err("unknown key");
        let message = error.to_string();
        assert!(
            message.contains("partner") && message.contains("line 5"),
            "{message}"
        );
    }

    #[test]
    fn wrong_type_is_named_with_its_line() {
        let error = resolve("period = \"2026-Q3\"\nseed = \"seven\"\n[inputs]\npartners = \"p\"\nassignments = \"a\"\n")
            .expect_err("wrong type");
        let message = error.to_string();
        assert!(
            message.contains("line 2") && message.contains("seed"),
            "{message}"
        );
    }

    #[test]
    fn every_problem_is_reported_with_key_and_line() {
        let error =
            resolve("period = \"2026-Q9\"\nmargin-rate = 1.5\n[inputs]\nassignments = \"a\"\n")
                .expect_err("invalid");
        let ConfigError::Invalid { problems, .. } = error else {
            panic!("expected Invalid")
        };
        let keys: Vec<(&str, Option<usize>)> =
            problems.iter().map(|p| (p.key.as_str(), p.line)).collect();
        assert_eq!(
            keys,
            vec![
                ("period", Some(1)),
                ("margin-rate", Some(2)),
                ("inputs.partners", None)
            ]
        );
    }

    #[test]
    fn opaque_period_needs_a_target_period() {
        assert!(
            resolve("period = \"FY26-H1\"\n[inputs]\npartners = \"p\"\nassignments = \"a\"\n")
                .is_err()
        );
        let settings = resolve(
            "period = \"FY26-H1\"\ntarget-period = \"FY26-H2\"\n[inputs]\npartners = \"p\"\nassignments = \"a\"\n",
        )
        .expect("valid");
        assert_eq!(settings.target_period, "FY26-H2");
    }

    #[test]
    fn key_line_finds_nested_and_array_keys() {
        let source = "period = \"x\"\n\n[[outcome]]\nname = \"a\"\n\n[[outcome]]\nname = \"b\"\nvalue-per-unit = 3\n";
        assert_eq!(key_line(source, &["period"]), Some(1));
        assert_eq!(
            key_line(source, &["outcome", "1", "value-per-unit"]),
            Some(8)
        );
        assert_eq!(key_line(source, &["missing"]), None);
    }

    #[test]
    fn command_line_overrides_the_file() {
        let overrides = Overrides {
            partners: Some(PathBuf::from("/elsewhere/p")),
            seed: Some(9),
            period: Some("2026-09".into()),
            ..Overrides::default()
        };
        let settings = RunSettings::from_source(
            Path::new("c.toml"),
            "period = \"2026-07\"\ntarget-period = \"2026-08\"\nseed = 1\n[inputs]\npartners = \"p\"\nassignments = \"a\"\n",
            &overrides,
        )
        .expect("valid");
        assert_eq!(settings.inputs.partners, Path::new("/elsewhere/p"));
        assert_eq!(settings.seed, 9);
        // The period from the command line, and its own next period (the
        // file's target period was the file period's).
        assert_eq!(settings.period, "2026-09");
        assert_eq!(settings.target_period, "2026-10");
    }

    #[test]
    fn a_period_label_from_the_command_line_keeps_or_takes_its_target() {
        let source = "period = \"FY26-H1\"\ntarget-period = \"FY26-H2\"\n[inputs]\npartners = \"p\"\nassignments = \"a\"\n";
        let with = |period: &str, target: Option<&str>| {
            RunSettings::from_source(
                Path::new("c.toml"),
                source,
                &Overrides {
                    period: Some(period.into()),
                    target_period: target.map(String::from),
                    ..Overrides::default()
                },
            )
        };
        // The file's own period keeps the file's target.
        let same = with("FY26-H1", None).expect("valid");
        assert_eq!(same.target_period, "FY26-H2");
        // Another label needs its target given with it.
        let other = with("FY26-H2", Some("FY27-H1")).expect("valid");
        assert_eq!(
            (other.period.as_str(), other.target_period.as_str()),
            ("FY26-H2", "FY27-H1")
        );
        assert!(with("FY26-H2", None).is_err());
    }
}
