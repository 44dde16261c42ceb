//! Stage 3, segment: k-means over the scaled features, ids, names, profiles.
//!
//! Segment ids keep their meaning across runs. Until the continuity matching
//! of centroids lands, a new segment inherits the id of the previous segment
//! that holds most of its members (when that is more than half of them and no
//! larger new segment claimed it first); any other segment gets an id above
//! every id ever used, so a retired id is never reused.

use std::collections::{BTreeMap, HashMap};

use anyhow::Context;
use ndarray::Array2;
use rayon::prelude::*;
use segtune_models::segmentation::selection::{
    choose, gate_failures, sweep, Gates, KScore, SweepParams,
};

use crate::config::RunSettings;
use crate::features::FeatureMatrix;
use crate::ingest::PartnersTable;
use crate::previous::PreviousRun;

/// The `source` of a k-means segment.
pub const SOURCE_KMEANS: &str = "kmeans";

/// The `source` of a partner pinned to its segment by ops at approval.
pub const SOURCE_OVERRIDE: &str = "override";

/// One segment.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentInfo {
    /// Stable id.
    pub id: u32,
    /// Name for people.
    pub name: String,
    /// `kmeans`, `rule:<name>` or `override`.
    pub source: String,
    /// Members.
    pub size: usize,
    /// Why the name.
    pub name_reason: String,
}

/// The segmentation of this run's partners.
#[derive(Debug, Clone)]
pub struct Segments {
    /// Segments, in index order.
    pub segments: Vec<SegmentInfo>,
    /// Segment index per partner row.
    pub member: Vec<usize>,
    /// Distance to the own centroid in scaled space.
    pub distance: Vec<Option<f64>>,
    /// Index of the nearest other segment.
    pub second: Vec<Option<usize>>,
    /// Distance gap to the nearest other centroid.
    pub margin: Vec<Option<f64>>,
    /// The partner's segment in the previous run.
    pub previous_segment_id: Vec<Option<u32>>,
    /// Placed in its segment by ops at approval (source `override`).
    pub pinned: Vec<bool>,
    /// Centroids of the k-means segments in scaled space, one row per
    /// k-means segment, in the order they follow the rule segments.
    pub centroids: Array2<f64>,
    /// Sum of squared distances to the centroids.
    pub inertia: f64,
    /// Highest segment id ever used, this run included.
    pub segment_id_high_water: u32,
    /// How k was chosen.
    pub selection: KSelection,
    /// How segment ids were carried over, in words.
    pub continuity: String,
}

/// Names k-means segments by the naming rules, in rule order: each rule
/// names the largest still-unnamed segment whose profile matches it. A
/// segment's profile is its centroid: per feature, its members' mean in
/// standard deviations from the average partner (after the transforms).
fn name_by_rules(
    centroids: &Array2<f64>,
    sizes: &[usize],
    features: &[String],
    names: &[crate::config::NameRule],
) -> anyhow::Result<Vec<Option<(String, String)>>> {
    let n = centroids.nrows();
    let profiles = PartnersTable {
        ids: (0..n).map(|i| i.to_string()).collect(),
        numeric: features
            .iter()
            .enumerate()
            .map(|(j, name)| crate::ingest::NumericColumn {
                name: name.clone(),
                values: centroids.column(j).to_vec(),
            })
            .collect(),
        revenue: crate::ingest::NumericColumn {
            name: String::new(),
            values: vec![f64::NAN; n],
        },
        categorical: Vec::new(),
        files: Vec::new(),
    };
    let mut out: Vec<Option<(String, String)>> = vec![None; n];
    for rule in names {
        let parsed = crate::rules::Rule::parse(&rule.name, &rule.name, &rule.when)?;
        // The default rules name columns that a configuration may not have: skip those.
        if !rule.configured && parsed.columns().iter().any(|c| !features.contains(c)) {
            continue;
        }
        let matches = crate::rules::apply(std::slice::from_ref(&parsed), &profiles)
            .map_err(|e| crate::exit::UsageError(format!("naming {e}")))?;
        let best = (0..n)
            .filter(|i| matches.rule_of[*i].is_some() && out[*i].is_none())
            .max_by_key(|i| (sizes[*i], std::cmp::Reverse(*i)));
        if let Some(index) = best {
            let values: Vec<String> = parsed
                .columns()
                .iter()
                .filter_map(|c| {
                    features
                        .iter()
                        .position(|f| f == c)
                        .map(|j| format!("{c} {:+.2} SD", centroids[[index, j]]))
                })
                .collect();
            out[index] = Some((
                rule.name.clone(),
                format!("naming rule `{}` ({})", rule.when, values.join(", ")),
            ));
        }
    }
    Ok(out)
}

fn name_segment(
    id: u32,
    centroid: ndarray::ArrayView1<f64>,
    features: &[String],
) -> (String, String) {
    let mut order: Vec<usize> = (0..centroid.len()).collect();
    order.sort_by(|a, b| {
        centroid[*b]
            .abs()
            .total_cmp(&centroid[*a].abs())
            .then(a.cmp(b))
    });
    let top: Vec<usize> = order
        .into_iter()
        .take(2)
        .filter(|j| centroid[*j].abs() >= 0.25)
        .collect();
    if top.is_empty() {
        return (
            format!("Segment {id}: average profile"),
            "no feature is more than 0.25 SD from the overall mean".into(),
        );
    }
    let words: Vec<String> = top
        .iter()
        .map(|j| {
            format!(
                "{} {}",
                if centroid[*j] > 0.0 { "high" } else { "low" },
                features[*j].replace('_', " ")
            )
        })
        .collect();
    let reason: Vec<String> = top
        .iter()
        .map(|j| format!("{:+.2} SD on {}", centroid[*j], features[*j]))
        .collect();
    (
        format!("Segment {id}: {}", words.join(", ")),
        format!("centroid {}", reason.join(", ")),
    )
}

/// The scores of one candidate k and its gates, as written to the manifest and the report.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct KCandidate {
    /// The scores.
    #[serde(flatten)]
    pub score: KScore,
    /// Whether it passed the gates.
    pub passed: bool,
    /// Why it did not.
    pub failures: Vec<String>,
}

/// How k was chosen.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KSelection {
    /// Every candidate's scores.
    pub candidates: Vec<KCandidate>,
    /// The k used.
    pub chosen: usize,
    /// Why, in words.
    pub reason: String,
}

/// No k passes the gates and no fallback is configured (exit code 4).
#[derive(Debug, Clone, thiserror::Error)]
#[error("no k in the sweep passes the quality gates (smallest share >= {min_share}, stability >= {min_stability}); set segments.fallback-k to use one anyway:\n{}", table(.candidates))]
pub struct NoViableK {
    /// Every candidate's scores.
    pub candidates: Vec<KCandidate>,
    /// The share gate.
    pub min_share: f64,
    /// The stability gate.
    pub min_stability: f64,
}

/// The candidates as a plain-text table.
pub fn table(candidates: &[KCandidate]) -> String {
    let mut out = String::from(
        "   k  silhouette  calinski_harabasz  davies_bouldin  smallest_share  stability  gates",
    );
    for c in candidates {
        out.push_str(&format!(
            "\n  {:>2}  {:>10.4}  {:>17.1}  {:>14.4}  {:>13.1}%  {:>9.3}  {}",
            c.score.k,
            c.score.silhouette,
            c.score.calinski_harabasz,
            c.score.davies_bouldin,
            c.score.smallest_share * 100.0,
            c.score.stability,
            if c.passed {
                "pass".to_string()
            } else {
                c.failures.join("; ")
            }
        ));
    }
    out
}

/// The k sweep's parameters from the run settings.
pub fn sweep_params(settings: &RunSettings) -> SweepParams {
    let config = &settings.segments;
    SweepParams {
        ks: match config.k {
            Some(k) => vec![k],
            None => (config.k_min..=config.k_max).collect(),
        },
        n_runs: config.restarts,
        max_n_iterations: config.max_iterations,
        tolerance: config.tolerance,
        seed: settings.seed,
        silhouette_sample: config.silhouette_sample,
        n_bootstrap: config.bootstrap,
        bootstrap_size: config.bootstrap_size,
        precision: config.precision,
    }
}

/// Refuses (as invalid input, exit 3) what k-means cannot cluster: fewer
/// partners outside the rule segments than the smallest k of the sweep
/// (none at all when the rules take every partner) or fewer distinct
/// feature values among them, or a numeric or one-hot
/// feature that is null, or constant, for every partner left to cluster (the
/// partners table as a whole passed the same checks at ingest: here the
/// rules took the partners that made the difference).
pub fn check_clusterable(
    partners: &PartnersTable,
    clustered_rows: &[usize],
    settings: &RunSettings,
) -> Result<(), crate::ingest::IngestError> {
    let n_clustered = clustered_rows.len();
    let smallest_k = sweep_params(settings).ks.iter().copied().min().unwrap_or(1);
    let problem = |column: Option<&str>, message: String| crate::ingest::Problem {
        file: settings.inputs.partners.clone(),
        column: column.map(str::to_string),
        row: None,
        partner_id: None,
        message,
    };
    let problems: Vec<crate::ingest::Problem> = if n_clustered < smallest_k {
        vec![problem(
            None,
            if n_clustered == 0 {
                format!("every partner matched a rule segment: none is left to cluster, and k-means needs at least k = {smallest_k} (segments.k-min or segments.k); narrow the rules")
            } else {
                format!("{n_clustered} partners to cluster (outside the rule segments) cannot form k = {smallest_k} segments, the smallest k of the sweep (segments.k-min or segments.k)")
            },
        )]
    } else {
        let one_hot = one_hot_columns(partners, settings).filter_map(|column| {
                let first = column.codes[clustered_rows[0]];
                let same = clustered_rows.iter().all(|r| column.codes[*r] == first);
                match first {
                    _ if !same || n_clustered == 1 => None,
                    None => Some(problem(Some(&column.name), format!(
                        "every value is null among the {n_clustered} partners left to cluster (outside the rule segments): a one-hot feature needs values; leave it out of features.one-hot or change the rules"
                    ))),
                    Some(code) => Some(problem(Some(&column.name), format!(
                        "the one-hot feature is constant (every value is `{}`) among the {n_clustered} partners left to cluster (outside the rule segments): it cannot tell them apart; leave it out of features.one-hot or change the rules",
                        column.levels[code as usize]
                    ))),
                }
            });
        partners
            .numeric
            .par_iter()
            .filter_map(|column| {
                let mut present = clustered_rows
                    .iter()
                    .map(|r| column.values[*r])
                    .filter(|v| !v.is_nan());
                match present.next() {
                    None => Some(problem(Some(&column.name), format!(
                        "every value is null among the {n_clustered} partners left to cluster (outside the rule segments): a feature needs at least one value; leave it out of features.numeric or change the rules"
                    ))),
                    Some(first) if n_clustered > 1 && present.all(|v| v == first) => Some(problem(Some(&column.name), format!(
                        "the feature is constant (every value is {first}) among the {n_clustered} partners left to cluster (outside the rule segments): it cannot tell them apart; leave it out of features.numeric or change the rules"
                    ))),
                    Some(_) => None,
                }
            })
            .collect::<Vec<_>>()
            .into_iter()
            .chain(one_hot)
            .collect()
    };
    let problems = if problems.is_empty() && n_clustered >= smallest_k {
        let distinct = distinct_rows(partners, clustered_rows, settings, smallest_k);
        if distinct < smallest_k {
            vec![problem(None, format!(
                "the {n_clustered} partners left to cluster (outside the rule segments) have only {distinct} distinct feature values: k-means cannot form k = {smallest_k} segments, the smallest k of the sweep (segments.k-min or segments.k)"
            ))]
        } else {
            problems
        }
    } else {
        problems
    };
    if problems.is_empty() {
        Ok(())
    } else {
        Err(crate::ingest::IngestError { problems })
    }
}

/// The categorical columns that enter the clustering (`features.one-hot`).
fn one_hot_columns<'a>(
    partners: &'a PartnersTable,
    settings: &'a RunSettings,
) -> impl Iterator<Item = &'a crate::ingest::CategoricalColumn> {
    partners
        .categorical
        .iter()
        .filter(|column| settings.features.one_hot.contains_key(&column.name))
}

/// How many of `rows` have distinct feature values (numeric features, a
/// missing value as a value of its own, and one-hot categories), counted up
/// to `limit`: a scan that stops at `limit` (after a few rows on real data).
fn distinct_rows(
    partners: &PartnersTable,
    rows: &[usize],
    settings: &RunSettings,
    limit: usize,
) -> usize {
    let one_hot: Vec<&crate::ingest::CategoricalColumn> =
        one_hot_columns(partners, settings).collect();
    let same = |a: usize, b: usize| {
        partners.numeric.iter().all(|column| {
            let (x, y) = (column.values[a], column.values[b]);
            x == y || (x.is_nan() && y.is_nan())
        }) && one_hot
            .iter()
            .all(|column| column.codes[a] == column.codes[b])
    };
    let mut distinct: Vec<usize> = Vec::with_capacity(limit);
    for &row in rows {
        if !distinct.iter().any(|&seen| same(seen, row)) {
            distinct.push(row);
            if distinct.len() >= limit {
                break;
            }
        }
    }
    distinct.len()
}

/// Segments the partners: sweeps k (or uses the fixed k), chooses by the
/// documented rule, and gives the segments ids and names. Takes the scaled
/// matrix out of `features` (its names and transform stay) and frees it once
/// every row is assigned, before the per-partner vectors are built.
pub fn segment(
    features: &mut FeatureMatrix,
    clustered_rows: &[usize],
    rules: &[crate::rules::Rule],
    matches: &crate::rules::RuleMatches,
    partners: &PartnersTable,
    previous: Option<&PreviousRun>,
    settings: &RunSettings,
) -> anyhow::Result<Segments> {
    let config = &settings.segments;
    let mut sweep_params = sweep_params(settings);
    // A k beyond the distinct rows to cluster cannot be fitted: left out
    // (check_clusterable made sure the smallest can).
    let largest_k = sweep_params.ks.iter().copied().max().unwrap_or(1);
    let distinct = distinct_rows(partners, clustered_rows, settings, largest_k);
    let left_out: Vec<usize> = sweep_params
        .ks
        .iter()
        .copied()
        .filter(|k| *k > distinct)
        .collect();
    sweep_params.ks.retain(|k| *k <= distinct);
    let left_out = if left_out.is_empty() {
        String::new()
    } else {
        tracing::warn!(
            ?left_out,
            distinct,
            "k beyond the distinct partners to cluster left out of the sweep"
        );
        format!(
            " (k = {} left out: only {distinct} distinct partners to cluster)",
            left_out
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let ks = sweep_params.ks.clone();
    let matrix = std::mem::take(&mut features.matrix);
    let swept = sweep(matrix.view(), &sweep_params).context("k-means failed")?;
    let gates = Gates {
        min_share: config.min_share,
        min_stability: config.min_stability,
    };
    let candidates: Vec<KCandidate> = swept
        .scores
        .iter()
        .map(|score| {
            let failures = gate_failures(score, &gates);
            KCandidate {
                score: score.clone(),
                passed: failures.is_empty(),
                failures,
            }
        })
        .collect();
    let (index, reason) = if config.k.is_some() {
        (
            0,
            format!("k = {} is fixed by the configuration (segments.k)", ks[0]),
        )
    } else if let Some(index) = choose(&swept.scores, &gates) {
        let score = &swept.scores[index];
        let passing = candidates.iter().filter(|c| c.passed).count();
        (
            index,
            format!(
                "k = {} has the best silhouette ({:.3}) of the {passing} k in {}..={} whose smallest segment holds at least {:.0} % of partners and whose stability is at least {:.2}",
                score.k,
                score.silhouette,
                config.k_min,
                config.k_max,
                config.min_share * 100.0,
                config.min_stability
            ) + &left_out,
        )
    } else if let Some(fallback) = config.fallback_k {
        let index = ks.iter().position(|k| *k == fallback).ok_or_else(|| -> anyhow::Error {
            if fallback > distinct {
                crate::ingest::IngestError {
                    problems: vec![crate::ingest::Problem {
                        file: settings.inputs.partners.clone(),
                        column: None,
                        row: None,
                        partner_id: None,
                        message: format!("no k passed the quality gates, and the fallback k = {fallback} (segments.fallback-k) cannot be formed: only {distinct} distinct partners to cluster"),
                    }],
                }
                .into()
            } else {
                crate::exit::UsageError(format!(
                    "segments.fallback-k = {fallback} is outside the sweep {}..={}",
                    config.k_min, config.k_max
                ))
                .into()
            }
        })?;
        (index, format!("no k passed the quality gates; k = {fallback} is the configured fallback (segments.fallback-k){left_out}"))
    } else {
        return Err(NoViableK {
            candidates,
            min_share: config.min_share,
            min_stability: config.min_stability,
        }
        .into());
    };
    for candidate in &candidates {
        let score = &candidate.score;
        tracing::debug!(
            k = score.k,
            silhouette = score.silhouette,
            smallest_share = score.smallest_share,
            stability = score.stability,
            inertia = score.inertia,
            passed = candidate.passed,
            "k candidate"
        );
    }
    tracing::debug!(k = ks[index], reason = %reason, "k chosen");
    let selection = KSelection {
        chosen: ks[index],
        reason,
        candidates,
    };
    let fitted = swept
        .fits
        .into_iter()
        .nth(index)
        .context("the chosen fit")?
        .assign(matrix.view());
    drop(matrix);
    let n_kmeans = fitted.centroids.nrows();
    let previous_segment_id: Vec<Option<u32>> = partners
        .ids
        .iter()
        .map(|id| previous.and_then(|p| p.segment_of.get(id).copied()))
        .collect();

    let n = partners.ids.len();
    let mut high_water = previous.map_or(0, |p| p.max_segment_id);
    let mut next_id = || {
        high_water += 1;
        high_water
    };

    // Rule segments keep their id by rule name.
    let rule_ids: Vec<u32> = rules
        .iter()
        .map(|rule| {
            previous
                .and_then(|p| p.rule_ids.get(&rule.name).copied())
                .unwrap_or_else(&mut next_id)
        })
        .collect();
    let reserved: std::collections::HashSet<u32> = rule_ids
        .iter()
        .copied()
        .chain(
            previous
                .map(|p| p.rule_ids.values().copied().collect::<Vec<_>>())
                .unwrap_or_default(),
        )
        .collect();

    // k-means segments keep the id of the previous segment they match by
    // profile (continuity); without a usable previous model, by majority
    // overlap of members; else they get a fresh id above every id ever used.
    let mut kmeans_ids: Vec<Option<u32>> = vec![None; n_kmeans];
    let mut continuity = "first run: new ids".to_string();
    if let Some(previous) = previous {
        let in_previous_space = previous
            .model
            .as_ref()
            .and_then(|m| m.transform_rows(partners, clustered_rows).map(|x| (m, x)));
        if let Some((model, x)) = in_previous_space {
            let means =
                crate::continuity::means_by_label(x.view(), &fitted.assignment.labels, n_kmeans);
            let matched = crate::continuity::match_to_previous(
                means.view(),
                model.centroids.view(),
                settings.segments.continuity_threshold,
            );
            for (id, old) in kmeans_ids.iter_mut().zip(matched) {
                *id = old
                    .map(|old| model.segment_ids[old])
                    .filter(|old| !reserved.contains(old));
            }
            continuity = format!(
                "matched to the previous run's centroids (optimal assignment in its scaled space, threshold {})",
                settings.segments.continuity_threshold
            );
        } else {
            let mut claimed: HashMap<u32, usize> = HashMap::new();
            for (index, id) in kmeans_ids.iter_mut().enumerate() {
                let mut overlap: BTreeMap<u32, usize> = BTreeMap::new();
                for (member, row) in fitted.assignment.labels.iter().zip(clustered_rows) {
                    if *member == index {
                        if let Some(old) = previous_segment_id[*row] {
                            *overlap.entry(old).or_default() += 1;
                        }
                    }
                }
                let best = overlap
                    .iter()
                    .filter(|(old, _)| !reserved.contains(old))
                    .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)));
                if let Some((old, count)) = best {
                    if *count * 2 > fitted.sizes[index] && !claimed.contains_key(old) {
                        claimed.insert(*old, index);
                        *id = Some(*old);
                    }
                }
            }
            continuity = "the previous model could not be applied (its features differ): matched by majority overlap of members".into();
        }
    }
    let kmeans_ids: Vec<u32> = kmeans_ids
        .into_iter()
        .map(|id| id.unwrap_or_else(&mut next_id))
        .collect();
    let high_water = rule_ids
        .iter()
        .chain(&kmeans_ids)
        .copied()
        .max()
        .unwrap_or(0)
        .max(high_water);

    // Assemble: non-empty rule segments first, then k-means segments.
    let mut segments = Vec::new();
    let mut rule_index = vec![usize::MAX; rules.len()];
    for (index, rule) in rules.iter().enumerate() {
        if matches.counts[index] > 0 {
            rule_index[index] = segments.len();
            segments.push(SegmentInfo {
                id: rule_ids[index],
                name: rule.segment_name.clone(),
                source: format!("rule:{}", rule.name),
                size: matches.counts[index],
                name_reason: format!("partners matching rule `{}`: {}", rule.name, rule.condition),
            });
        }
    }
    let offset = segments.len();
    let by_rule = name_by_rules(
        &fitted.centroids,
        &fitted.sizes,
        &features.names,
        &settings.names,
    )?;
    for (index, kmeans_id) in kmeans_ids.iter().enumerate() {
        let fresh = || match &by_rule[index] {
            Some((name, reason)) => (name.clone(), reason.clone()),
            None => name_segment(*kmeans_id, fitted.centroids.row(index), &features.names),
        };
        let (name, name_reason) = match previous.and_then(|p| p.segment_names.get(kmeans_id)) {
            Some(kept) => {
                let fits = match settings.names.iter().find(|rule| &rule.name == kept) {
                    // A rule name: it fits when that rule still names this segment.
                    Some(_) => by_rule[index]
                        .as_ref()
                        .is_some_and(|(name, _)| name == kept),
                    // A profile name ("Segment 3: ..."): it fits when the profile would give it again.
                    None => fresh().0 == *kept,
                };
                let reason = if fits {
                    "kept from the previous run (same segment id); the profile still fits the name"
                        .to_string()
                } else {
                    format!("kept from the previous run (same segment id); NOTE: the profile no longer fits the name, it now reads as \"{}\"", fresh().0)
                };
                (kept.clone(), reason)
            }
            None => fresh(),
        };
        segments.push(SegmentInfo {
            id: *kmeans_id,
            name,
            source: SOURCE_KMEANS.into(),
            size: fitted.sizes[index],
            name_reason,
        });
    }
    let mut member = vec![0usize; n];
    let mut distance = vec![None; n];
    let mut second = vec![None; n];
    let mut margin = vec![None; n];
    for (row, rule) in matches.rule_of.iter().enumerate() {
        if let Some(rule) = rule {
            member[row] = rule_index[*rule];
        }
    }
    for (position, row) in clustered_rows.iter().enumerate() {
        member[*row] = offset + fitted.assignment.labels[position];
        distance[*row] = Some(fitted.assignment.distances[position]);
        second[*row] = fitted.assignment.second[position].map(|s| offset + s);
        margin[*row] = fitted.assignment.margins[position];
    }
    Ok(Segments {
        segments,
        member,
        distance,
        second,
        margin,
        previous_segment_id,
        pinned: vec![false; n],
        centroids: fitted.centroids,
        inertia: fitted.inertia,
        segment_id_high_water: high_water,
        selection,
        continuity,
    })
}

/// One segment's profile in original units.
#[derive(Debug, Clone)]
pub struct SegmentProfile {
    /// Segment id.
    pub id: u32,
    /// Name.
    pub name: String,
    /// Source.
    pub source: String,
    /// Members.
    pub n_partners: usize,
    /// Members over all partners.
    pub share_partners: f64,
    /// Revenue of members over all revenue (`None` when total revenue is 0).
    pub share_revenue: Option<f64>,
    /// Mean per feature (non-missing values; `None` when all are missing).
    pub means: Vec<Option<f64>>,
    /// Median per feature.
    pub medians: Vec<Option<f64>>,
}

/// Profiles of every segment; `features` in partners-table order.
pub fn profiles(partners: &PartnersTable, segments: &Segments) -> Vec<SegmentProfile> {
    let n = partners.ids.len() as f64;
    let total_revenue: f64 = partners.revenue.values.iter().filter(|v| !v.is_nan()).sum();
    // Segments, and the columns within each, in parallel (every value is
    // computed by one task, so the same on any number of threads).
    segments
        .segments
        .par_iter()
        .enumerate()
        .map(|(index, info)| {
            let rows: Vec<usize> = (0..segments.member.len())
                .filter(|r| segments.member[*r] == index)
                .collect();
            let revenue: f64 = rows
                .iter()
                .map(|r| partners.revenue.values[*r])
                .filter(|v| !v.is_nan())
                .sum();
            let (means, medians): (Vec<Option<f64>>, Vec<Option<f64>>) = partners
                .numeric
                .par_iter()
                .map(|column| {
                    let values: Vec<f64> = rows
                        .iter()
                        .map(|r| column.values[*r])
                        .filter(|v| !v.is_nan())
                        .collect();
                    (
                        (!values.is_empty())
                            .then(|| values.iter().sum::<f64>() / values.len() as f64),
                        segtune_models::features::median(&values),
                    )
                })
                .unzip();
            SegmentProfile {
                id: info.id,
                name: info.name.clone(),
                source: info.source.clone(),
                n_partners: rows.len(),
                share_partners: rows.len() as f64 / n,
                share_revenue: (total_revenue != 0.0).then(|| revenue / total_revenue),
                means,
                medians,
            }
        })
        .collect()
}
