//! Channel ops' overrides at approval (`segtune approve --overrides FILE`).
//!
//! One TOML file, three kinds of entry, any number of each:
//!
//! ```toml
//! [[rename]]            # a segment's name for people
//! segment = 3
//! name = "Growth resellers"
//!
//! [[pin-partners]]      # partners placed in a segment (source `override`)
//! segment = 2
//! partners = ["P0000123", "P0004711"]
//!
//! [[scheme]]            # exactly one of pin, cap, off
//! segment = 3
//! scheme = "deal_reg_spiff"
//! cap = 0.2
//! ```
//!
//! Approving with overrides re-runs the pipeline on the run's own inputs
//! (each checked against the SHA-256 the manifest recorded) with the
//! overrides applied: renamed segments and pinned partners after
//! segmentation, scheme limits as the segment's own `[[tuning.segment]]`
//! caps, pins and switches. So the weights are re-derived by the tuner
//! itself, within every limit it always respects, and every output (segments,
//! profiles, weights, the next draw, the report) agrees with the overrides.
//! An invalid override is refused (exit 2) before anything is written.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::TuningSettings;
use crate::exit::UsageError;
use crate::ingest::PartnersTable;
use crate::segment::Segments;

/// The longest segment name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 80;

/// One `[[rename]]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rename {
    /// Segment id.
    pub segment: u32,
    /// The new name.
    pub name: String,
}

/// One `[[pin-partners]]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PinPartners {
    /// Segment id the partners are placed in.
    pub segment: u32,
    /// Their partner ids.
    pub partners: Vec<String>,
}

/// One `[[scheme]]`: pin, cap or switch off a scheme in a segment.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SchemeOverride {
    /// Segment id.
    pub segment: u32,
    /// Scheme id.
    pub scheme: String,
    /// A fixed weight.
    pub pin: Option<f64>,
    /// A highest weight.
    pub cap: Option<f64>,
    /// `true`: weight 0.
    pub off: Option<bool>,
}

/// An overrides file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Overrides {
    /// Renamed segments.
    #[serde(default)]
    pub rename: Vec<Rename>,
    /// Partners pinned to segments.
    #[serde(default)]
    pub pin_partners: Vec<PinPartners>,
    /// Scheme limits per segment.
    #[serde(default)]
    pub scheme: Vec<SchemeOverride>,
}

/// One applied override, as the manifest and the report record it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Applied {
    /// `rename`, `pin_partners` or `scheme`.
    pub kind: &'static str,
    /// Segment id.
    pub segment_id: u32,
    /// What was done, in words.
    pub text: String,
    /// The segments pinned partners left (their members changed too).
    #[serde(skip)]
    pub moved_from: Vec<u32>,
}

/// The run's segments and schemes, as its weights list them.
#[derive(Debug, Clone, Default)]
pub struct RunShape {
    /// Segment names by id.
    pub segments: BTreeMap<u32, String>,
    /// Scheme ids.
    pub schemes: BTreeSet<String>,
}

/// Everything `run` needs to apply overrides in an approval.
#[derive(Debug, Clone)]
pub struct Approval {
    /// The overrides (checked against the run's shape).
    pub overrides: Overrides,
    /// The overrides file, for messages and the manifest.
    pub file: PathBuf,
    /// SHA-256 of the file.
    pub sha256: String,
    /// Who approves.
    pub by: String,
    /// When (UTC, RFC 3339).
    pub at: String,
    /// The run's id, kept: an approval is of this run.
    pub run_id: String,
}

fn problem(file: &Path, problems: Vec<String>) -> UsageError {
    let mut message = format!(
        "`{}`: invalid override{}; nothing was changed",
        file.display(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems {
        message.push_str("\n  - ");
        message.push_str(&p);
    }
    UsageError(message)
}

impl Overrides {
    /// Parses an overrides file; unknown keys and wrong types name their line.
    pub fn parse(file: &Path, source: &str) -> Result<Self, UsageError> {
        let overrides: Self = toml::from_str(source)
            .map_err(|e| problem(file, vec![e.to_string().trim_end().to_string()]))?;
        if overrides == Self::default() {
            return Err(problem(
                file,
                vec!["has no [[rename]], [[pin-partners]] or [[scheme]] entry".into()],
            ));
        }
        Ok(overrides)
    }

    /// Checks every entry against the run's segments and schemes and the
    /// configuration's own limits, naming each entry that is wrong.
    pub fn check(
        &self,
        file: &Path,
        shape: &RunShape,
        tuning: &TuningSettings,
    ) -> Result<(), UsageError> {
        let mut problems = Vec::new();
        let known = |segment: u32, what: &str, problems: &mut Vec<String>| {
            if !shape.segments.contains_key(&segment) {
                problems.push(format!(
                    "{what}: segment {segment} is not in this run (its segments: {})",
                    shape
                        .segments
                        .keys()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        };
        let mut renamed = BTreeSet::new();
        for (i, rename) in self.rename.iter().enumerate() {
            let what = format!("[[rename]] #{} (segment {})", i + 1, rename.segment);
            known(rename.segment, &what, &mut problems);
            let name = rename.name.trim();
            if name.is_empty() {
                problems.push(format!("{what}: the name is empty"));
            } else if name.chars().count() > MAX_NAME_CHARS {
                problems.push(format!(
                    "{what}: the name has {} characters; at most {MAX_NAME_CHARS}",
                    name.chars().count()
                ));
            } else if name.chars().any(char::is_control) {
                problems.push(format!("{what}: the name has a control character"));
            }
            if !renamed.insert(rename.segment) {
                problems.push(format!(
                    "{what}: segment {} is renamed twice",
                    rename.segment
                ));
            }
        }
        // Names after renaming must tell segments apart.
        let mut names: BTreeMap<u32, String> = shape.segments.clone();
        for rename in &self.rename {
            names.insert(rename.segment, rename.name.trim().to_string());
        }
        let mut seen: BTreeMap<&str, u32> = BTreeMap::new();
        for (id, name) in &names {
            if let Some(other) = seen.insert(name.as_str(), *id) {
                if self
                    .rename
                    .iter()
                    .any(|r| r.segment == *id || r.segment == other)
                {
                    problems.push(format!(
                        "[[rename]]: segments {other} and {id} would both be called \"{name}\""
                    ));
                }
            }
        }
        let mut pinned_to: BTreeMap<&str, u32> = BTreeMap::new();
        for (i, pin) in self.pin_partners.iter().enumerate() {
            let what = format!("[[pin-partners]] #{} (segment {})", i + 1, pin.segment);
            known(pin.segment, &what, &mut problems);
            if pin.partners.is_empty() {
                problems.push(format!("{what}: `partners` is empty"));
            }
            for partner in &pin.partners {
                if let Some(other) = pinned_to.insert(partner.as_str(), pin.segment) {
                    problems.push(format!(
                        "{what}: partner `{}` is pinned twice (also to segment {other})",
                        partner.escape_debug()
                    ));
                }
            }
        }
        let mut limited = BTreeSet::new();
        for (i, entry) in self.scheme.iter().enumerate() {
            let what = format!(
                "[[scheme]] #{} (segment {}, scheme `{}`)",
                i + 1,
                entry.segment,
                entry.scheme
            );
            known(entry.segment, &what, &mut problems);
            if !shape.schemes.contains(&entry.scheme) {
                problems.push(format!(
                    "{what}: scheme `{}` is not in this run (its schemes: {})",
                    entry.scheme,
                    shape.schemes.iter().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
            let kinds = [
                entry.pin.is_some(),
                entry.cap.is_some(),
                entry.off.is_some(),
            ];
            if kinds.iter().filter(|k| **k).count() != 1 {
                problems.push(format!("{what}: give exactly one of `pin`, `cap` or `off`"));
            }
            for (key, value) in [("pin", entry.pin), ("cap", entry.cap)] {
                if let Some(value) = value {
                    if !(0.0..=1.0).contains(&value) {
                        problems.push(format!("{what}: `{key} = {value}`: a weight is in [0, 1]"));
                    }
                }
            }
            if entry.off == Some(false) {
                problems.push(format!(
                    "{what}: `off = false` changes nothing; remove the entry"
                ));
            }
            if !limited.insert((entry.segment, entry.scheme.as_str())) {
                problems.push(format!(
                    "{what}: the scheme has two entries for this segment"
                ));
            }
            let limits = tuning.limits(entry.segment, &entry.scheme);
            if limits.off && entry.off != Some(true) {
                problems.push(format!(
                    "{what}: the configuration switches this scheme off; change the configuration to use it"
                ));
            } else if let (Some(weight), None) = (limits.pinned, entry.pin) {
                problems.push(format!(
                    "{what}: the configuration pins this scheme at {weight}; change the configuration, or pin it here"
                ));
            }
        }
        if problems.is_empty() {
            // Limits that cannot be met once the overrides are added (a cap
            // below the floor, caps summing below 1, pins above it).
            let schemes: Vec<String> = shape.schemes.iter().cloned().collect();
            for (place, message) in self.tuning(tuning).unmet(&schemes) {
                if let Some(segment) =
                    place.filter(|id| self.scheme.iter().any(|e| e.segment == *id))
                {
                    problems.push(format!(
                        "the [[scheme]] entries of segment {segment}: {message}"
                    ));
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problem(file, problems))
        }
    }

    /// The tuning settings with the scheme overrides as each segment's own
    /// limits.
    pub fn tuning(&self, tuning: &TuningSettings) -> TuningSettings {
        let mut tuning = tuning.clone();
        for entry in &self.scheme {
            let rules = tuning.segments.entry(entry.segment).or_default();
            if let Some(weight) = entry.pin {
                rules.pinned.insert(entry.scheme.clone(), weight);
            }
            if let Some(cap) = entry.cap {
                rules.caps.insert(entry.scheme.clone(), cap);
            }
            if entry.off == Some(true) {
                rules.pinned.remove(&entry.scheme);
                rules.off.insert(entry.scheme.clone());
            }
        }
        tuning
    }

    /// What each scheme override does, in words, by (segment, scheme).
    pub fn scheme_notes(&self, by: &str) -> BTreeMap<(u32, String), String> {
        self.scheme
            .iter()
            .map(|entry| {
                let what = match (entry.pin, entry.cap) {
                    (Some(weight), _) => format!("pinned at {weight:.2}"),
                    (None, Some(cap)) => format!("capped at {cap:.2}"),
                    (None, None) => "switched off".to_string(),
                };
                (
                    (entry.segment, entry.scheme.clone()),
                    format!("{what} by {by} at approval"),
                )
            })
            .collect()
    }

    /// Applies renames and pinned partners to this run's segments. A pinned
    /// partner leaves its k-means or rule segment for the named one: its
    /// distance and margin no longer apply. Refuses a partner the run does
    /// not have and a segment the pins would leave empty.
    pub fn apply(
        &self,
        file: &Path,
        by: &str,
        segments: &mut Segments,
        partners: &PartnersTable,
    ) -> Result<Vec<Applied>, UsageError> {
        let index_of: BTreeMap<u32, usize> = segments
            .segments
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id, i))
            .collect();
        let mut applied = Vec::new();
        let mut problems = Vec::new();
        let row_of: std::collections::HashMap<&str, usize> = partners
            .ids
            .iter()
            .enumerate()
            .map(|(row, id)| (id, row))
            .collect();
        for (i, pin) in self.pin_partners.iter().enumerate() {
            let Some(&target) = index_of.get(&pin.segment) else {
                problems.push(format!(
                    "[[pin-partners]] #{}: segment {} is not in this run",
                    i + 1,
                    pin.segment
                ));
                continue;
            };
            let mut moved = Vec::new();
            let mut moved_from = BTreeSet::new();
            for partner in &pin.partners {
                let Some(&row) = row_of.get(partner.as_str()) else {
                    problems.push(format!(
                        "[[pin-partners]] #{} (segment {}): partner `{}` is not among this run's partners",
                        i + 1,
                        pin.segment,
                        partner.escape_debug()
                    ));
                    continue;
                };
                if segments.member[row] != target {
                    moved.push(partner.as_str());
                    moved_from.insert(segments.segments[segments.member[row]].id);
                }
                segments.member[row] = target;
                segments.pinned[row] = true;
                segments.distance[row] = None;
                segments.second[row] = None;
                segments.margin[row] = None;
            }
            let listed: Vec<String> = pin
                .partners
                .iter()
                .take(10)
                .map(|p| p.escape_debug().to_string())
                .collect();
            applied.push(Applied {
                kind: "pin_partners",
                segment_id: pin.segment,
                text: format!(
                    "{by} pinned {} partner{} to segment {} ({} moved): {}{}",
                    pin.partners.len(),
                    if pin.partners.len() == 1 { "" } else { "s" },
                    pin.segment,
                    moved.len(),
                    listed.join(", "),
                    if pin.partners.len() > 10 {
                        format!(" and {} more", pin.partners.len() - 10)
                    } else {
                        String::new()
                    }
                ),
                moved_from: moved_from.into_iter().collect(),
            });
        }
        for (index, info) in segments.segments.iter_mut().enumerate() {
            info.size = segments.member.iter().filter(|m| **m == index).count();
            if info.size == 0 && !self.pin_partners.is_empty() {
                problems.push(format!(
                    "[[pin-partners]]: segment {} (\"{}\") would be left without partners",
                    info.id, info.name
                ));
            }
        }
        for rename in &self.rename {
            let Some(&index) = index_of.get(&rename.segment) else {
                problems.push(format!(
                    "[[rename]]: segment {} is not in this run",
                    rename.segment
                ));
                continue;
            };
            let info = &mut segments.segments[index];
            let name = rename.name.trim().to_string();
            applied.push(Applied {
                kind: "rename",
                segment_id: rename.segment,
                text: format!(
                    "{by} renamed segment {} from \"{}\" to \"{name}\"",
                    info.id, info.name
                ),
                moved_from: Vec::new(),
            });
            info.name_reason = format!(
                "named by {by} at approval; segtune proposed \"{}\" ({})",
                info.name, info.name_reason
            );
            info.name = name;
        }
        for ((segment, scheme), note) in self.scheme_notes(by) {
            applied.push(Applied {
                kind: "scheme",
                segment_id: segment,
                text: format!("scheme {scheme} in segment {segment} {note}"),
                moved_from: Vec::new(),
            });
        }
        if problems.is_empty() {
            Ok(applied)
        } else {
            Err(problem(file, problems))
        }
    }
}
