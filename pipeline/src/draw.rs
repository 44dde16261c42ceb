//! Stage 6, draw: the target period's assignments.
//!
//! Per segment, members in partner_id order are drawn with a seed derived
//! from the run's seed and the segment id: holdout first at the segment's
//! holdout share, then schemes by weight, in exact counts
//! ([`segtune_models::draw`]). Sorting by partner_id makes the draw
//! independent of the order of rows in the input files.

use std::collections::BTreeMap;

use segtune_data::HOLDOUT;
use segtune_models::draw::stratified_draw_eligible;

use crate::config::RunSettings;
use crate::ingest::PartnersTable;
use crate::segment::Segments;
use crate::tune::WeightRow;

/// The target period's draw, one entry per partner in partners-table order.
#[derive(Debug, Clone)]
pub struct NextAssignments {
    /// Segment id per partner.
    pub segment_id: Vec<u32>,
    /// Scheme id (or `holdout`) per partner.
    pub scheme_id: Vec<String>,
    /// Consecutive periods held out, this one included (0 when drawn a scheme).
    pub holdout_streak: Vec<u32>,
    /// Segments whose holdout came out smaller than planned (too few
    /// partners eligible), with the share actually held out.
    pub short_holdout: BTreeMap<u32, f64>,
}

fn segment_seed(seed: u64, segment_id: u32) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ u64::from(segment_id).wrapping_mul(0xD1B5_4A32_D192_ED03)
        ^ 0x5E67_7E5D
}

/// Draws every partner. Strategic partners and partners already held out
/// `tuning.max-consecutive-holdouts` periods in a row (by the previous
/// run's `holdout_streak`) are never held out.
pub fn draw(
    partners: &PartnersTable,
    segments: &Segments,
    weights: &[WeightRow],
    strategic: &[bool],
    previous_streak: Option<&std::collections::HashMap<String, u32>>,
    settings: &RunSettings,
) -> NextAssignments {
    let n = partners.ids.len();
    let mut scheme_id = vec![String::new(); n];
    let mut holdout_streak = vec![0u32; n];
    let mut short_holdout = BTreeMap::new();
    let streak_before = |row: usize| -> u32 {
        previous_streak
            .and_then(|s| s.get(&partners.ids[row]).copied())
            .unwrap_or(0)
    };
    let segment_id: Vec<u32> = segments
        .member
        .iter()
        .map(|m| segments.segments[*m].id)
        .collect();
    for (index, segment) in segments.segments.iter().enumerate() {
        let mut members: Vec<usize> = (0..n).filter(|r| segments.member[*r] == index).collect();
        members.sort_by(|a, b| partners.ids[*a].cmp(&partners.ids[*b]));
        let rows: Vec<&WeightRow> = weights
            .iter()
            .filter(|w| w.segment_id == segment.id)
            .collect();
        let by_scheme: BTreeMap<&str, f64> = rows
            .iter()
            .map(|w| (w.scheme_id.as_str(), w.weight))
            .collect();
        let schemes: Vec<&str> = by_scheme.keys().copied().collect();
        let shares: Vec<f64> = by_scheme.values().copied().collect();
        let holdout_share = rows
            .first()
            .map_or(settings.tuning.holdout_share, |w| w.holdout_share);
        let eligible: Vec<bool> = members
            .iter()
            .map(|row| {
                !strategic.get(*row).copied().unwrap_or(false)
                    && settings
                        .tuning
                        .max_consecutive_holdouts
                        .is_none_or(|cap| streak_before(*row) < cap)
            })
            .collect();
        let drawn = stratified_draw_eligible(
            holdout_share,
            &shares,
            segment_seed(settings.seed, segment.id),
            &eligible,
        );
        let wanted = (holdout_share * members.len() as f64).round() as usize;
        let held = drawn.iter().filter(|d| d.is_none()).count();
        if held < wanted {
            short_holdout.insert(segment.id, held as f64 / members.len() as f64);
        }
        for (member, choice) in members.iter().zip(drawn) {
            scheme_id[*member] = choice.map_or(HOLDOUT, |j| schemes[j]).to_string();
            if choice.is_none() {
                holdout_streak[*member] = streak_before(*member) + 1;
            }
        }
    }
    NextAssignments {
        segment_id,
        scheme_id,
        holdout_streak,
        short_holdout,
    }
}
