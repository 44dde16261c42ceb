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
use segtune_models::segmentation::SegmentationParams;

use crate::config::RunSettings;
use crate::features::FeatureMatrix;
use crate::ingest::PartnersTable;
use crate::previous::PreviousRun;

/// The `source` of a k-means segment.
pub const SOURCE_KMEANS: &str = "kmeans";

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
    /// Centroids in scaled space, one row per segment.
    pub centroids: Array2<f64>,
    /// Sum of squared distances to the centroids.
    pub inertia: f64,
    /// Highest segment id ever used, this run included.
    pub segment_id_high_water: u32,
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

/// Segments the partners.
pub fn segment(
    features: &FeatureMatrix,
    partners: &PartnersTable,
    previous: Option<&PreviousRun>,
    settings: &RunSettings,
) -> anyhow::Result<Segments> {
    let params = SegmentationParams::new(settings.segments.k)
        .with_n_runs(settings.segments.restarts)
        .with_max_n_iterations(settings.segments.max_iterations)
        .with_tolerance(settings.segments.tolerance)
        .with_seed(settings.seed)
        .check()
        .context("invalid k-means settings")?;
    let fitted = params
        .fit_view(features.matrix.view())
        .context("k-means failed")?;
    let n_segments = fitted.centroids.nrows();
    let previous_segment_id: Vec<Option<u32>> = partners
        .ids
        .iter()
        .map(|id| previous.and_then(|p| p.segment_of.get(id).copied()))
        .collect();

    // Ids: inherit by majority overlap, else fresh above the high-water mark.
    let mut high_water = previous.map_or(0, |p| p.max_segment_id);
    let mut ids: Vec<Option<u32>> = vec![None; n_segments];
    if previous.is_some() {
        let mut claimed: HashMap<u32, usize> = HashMap::new();
        for (index, id) in ids.iter_mut().enumerate() {
            let mut overlap: BTreeMap<u32, usize> = BTreeMap::new();
            for (member, old) in fitted.assignment.labels.iter().zip(&previous_segment_id) {
                if *member == index {
                    if let Some(old) = old {
                        *overlap.entry(*old).or_default() += 1;
                    }
                }
            }
            let best = overlap
                .iter()
                .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)));
            if let Some((old, count)) = best {
                if *count * 2 > fitted.sizes[index] && !claimed.contains_key(old) {
                    claimed.insert(*old, index);
                    *id = Some(*old);
                }
            }
        }
    }
    let ids: Vec<u32> = ids
        .into_iter()
        .map(|id| {
            id.unwrap_or_else(|| {
                high_water += 1;
                high_water
            })
        })
        .collect();
    let high_water = ids.iter().copied().max().unwrap_or(0).max(high_water);

    let segments = (0..n_segments)
        .map(|index| {
            let (name, name_reason) = match previous.and_then(|p| p.segment_names.get(&ids[index]))
            {
                Some(name) => (
                    name.clone(),
                    "kept from the previous run (same segment id)".to_string(),
                ),
                None => name_segment(ids[index], fitted.centroids.row(index), &features.names),
            };
            SegmentInfo {
                id: ids[index],
                name,
                source: SOURCE_KMEANS.into(),
                size: fitted.sizes[index],
                name_reason,
            }
        })
        .collect();
    Ok(Segments {
        segments,
        member: fitted.assignment.labels,
        distance: fitted.assignment.distances.into_iter().map(Some).collect(),
        second: fitted.assignment.second,
        margin: fitted.assignment.margins,
        previous_segment_id,
        centroids: fitted.centroids,
        inertia: fitted.inertia,
        segment_id_high_water: high_water,
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
    segments
        .segments
        .iter()
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
            let mut means = Vec::new();
            let mut medians = Vec::new();
            for column in &partners.numeric {
                let values: Vec<f64> = rows
                    .iter()
                    .map(|r| column.values[*r])
                    .filter(|v| !v.is_nan())
                    .collect();
                means.push(
                    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64),
                );
                medians.push(segtune_models::features::median(&values));
            }
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
