//! Tuning: each segment's scheme weights for the next period.
//!
//! A **weight** is the probability that a partner of the segment who is not
//! held out gets the scheme next period; a segment's weights sum to 1.
//!
//! **Posterior.** For each segment and scheme, a normal posterior of the
//! scheme's net value per treated partner (value x lift - cost per partner).
//! Each period's evidence is that period's estimate only, with its standard
//! error; the prior is the previous period's posterior with its variance
//! divided by a forgetting factor `lambda` in (0, 1] (so old evidence fades
//! and the tuner can react, and nothing is counted twice). Evidence more than
//! [`CHANGE_Z`] standard deviations from what the prior predicts is taken as
//! a change in the truth and the prior is mostly forgotten (its variance
//! times [`CHANGE_INFLATION`]), so a scheme that stops working loses its
//! weight within two periods instead of being averaged away. Where a segment
//! has no posterior yet, the prior is the scheme's distribution across
//! segments this period (a random-effects mean and between-segment variance,
//! DerSimonian-Laird, never tighter than a typical segment's own standard
//! error): partial pooling, so a small segment borrows strength from the
//! others without being forced to agree with them.
//!
//! **Target.** The probability that each scheme is the best in its segment,
//! from seeded draws of the posteriors (Thompson sampling's allocation): a
//! scheme is favoured in proportion to the chance that it is really the best,
//! so a clear winner takes the most and a close race stays spread.
//!
//! **Constraints.** The target is then projected (Euclidean) onto the
//! feasible set: weights sum to 1, each at least the floor, at most its cap,
//! within `max_step` of last period's weight, pinned schemes fixed, switched
//! off schemes at 0. Ops' limits win over the max step: switching a scheme
//! off, or capping or pinning it more than a step away, lifts the max step of
//! the segment's other schemes for that period, so the weight can go
//! somewhere. [`project`] solves it exactly by
//! bisection on the one multiplier of the sum constraint.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// Why weights cannot be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TuningError {
    /// The lower bounds exceed 1 or the upper bounds do not reach it.
    #[error("the constraints cannot be met: lower bounds sum to {lower:.3}, upper bounds to {upper:.3} (they must bracket 1)")]
    Infeasible {
        /// Sum of the lower bounds.
        lower: f64,
        /// Sum of the upper bounds.
        upper: f64,
    },
    /// No schemes.
    #[error("no schemes to weigh")]
    NoSchemes,
}

/// Evidence more than this many standard deviations from the prior's
/// prediction is taken as a change in the truth.
pub const CHANGE_Z: f64 = 2.0;
/// How much a detected change widens the prior.
pub const CHANGE_INFLATION: f64 = 10.0;

/// A normal distribution of net value per treated partner.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Belief {
    /// Mean.
    pub mean: f64,
    /// Variance.
    pub variance: f64,
}

impl Belief {
    /// The central 95 % interval.
    pub fn interval(&self) -> (f64, f64) {
        let half = 1.959_963_984_540_054 * self.variance.max(0.0).sqrt();
        (self.mean - half, self.mean + half)
    }
}

/// This period's estimate of net value per treated partner.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evidence {
    /// Estimate.
    pub net_per_partner: f64,
    /// Its standard error.
    pub se: f64,
}

/// The random-effects distribution of one scheme's net value across
/// segments (DerSimonian-Laird); `None` with fewer than two estimates.
pub fn pooled_prior(evidence: &[Evidence]) -> Option<Belief> {
    let usable: Vec<&Evidence> = evidence
        .iter()
        .filter(|e| e.se > 0.0 && e.se.is_finite() && e.net_per_partner.is_finite())
        .collect();
    if usable.len() < 2 {
        return None;
    }
    let weights: Vec<f64> = usable.iter().map(|e| 1.0 / (e.se * e.se)).collect();
    let total: f64 = weights.iter().sum();
    let fixed = usable
        .iter()
        .zip(&weights)
        .map(|(e, w)| w * e.net_per_partner)
        .sum::<f64>()
        / total;
    let q: f64 = usable
        .iter()
        .zip(&weights)
        .map(|(e, w)| w * (e.net_per_partner - fixed).powi(2))
        .sum();
    let c = total - weights.iter().map(|w| w * w).sum::<f64>() / total;
    let tau2 = if c > 0.0 {
        ((q - (usable.len() - 1) as f64) / c).max(0.0)
    } else {
        0.0
    };
    let random: Vec<f64> = usable.iter().map(|e| 1.0 / (e.se * e.se + tau2)).collect();
    let random_total: f64 = random.iter().sum();
    let mean = usable
        .iter()
        .zip(&random)
        .map(|(e, w)| w * e.net_per_partner)
        .sum::<f64>()
        / random_total;
    // A segment's true value varies around the mean by tau; the mean itself
    // is uncertain by 1 / sum of weights. With few noisy segments tau is
    // often estimated at 0, which would make every segment agree by fiat:
    // the prior is never allowed to be stronger than a typical segment's
    // own estimate (the median squared standard error), so pooling shrinks a
    // segment's evidence at most about halfway.
    let mut squared: Vec<f64> = usable.iter().map(|e| e.se * e.se).collect();
    squared.sort_by(f64::total_cmp);
    let typical = squared[squared.len() / 2];
    Some(Belief {
        mean,
        variance: tau2.max(typical) + 1.0 / random_total,
    })
}

/// The posterior after this period: the prior with its variance divided by
/// `forgetting`, updated with the evidence. Without evidence, the discounted
/// prior; without either, `None`.
pub fn update(
    prior: Option<Belief>,
    evidence: Option<Evidence>,
    forgetting: f64,
) -> Option<Belief> {
    let prior = prior.map(|p| Belief {
        mean: p.mean,
        variance: p.variance / forgetting,
    });
    let evidence = evidence.filter(|e| e.net_per_partner.is_finite() && e.se.is_finite());
    match (prior, evidence) {
        (None, None) => None,
        (Some(p), None) => Some(p),
        (None, Some(e)) => Some(Belief {
            mean: e.net_per_partner,
            variance: e.se * e.se,
        }),
        // An exact estimate (all outcomes equal) or a degenerate prior: the
        // evidence alone.
        (Some(p), Some(e)) if e.se <= 0.0 || p.variance <= 0.0 => Some(Belief {
            mean: e.net_per_partner,
            variance: e.se * e.se,
        }),
        (Some(p), Some(e)) => {
            // Evidence far from what the prior predicts marks a change: the
            // prior is then mostly forgotten, so the tuner reacts in a period
            // or two instead of averaging the change away.
            let z = (e.net_per_partner - p.mean).abs() / (p.variance + e.se * e.se).sqrt();
            let p = if z > CHANGE_Z {
                Belief {
                    mean: p.mean,
                    variance: p.variance * CHANGE_INFLATION,
                }
            } else {
                p
            };
            let (a, b) = (1.0 / p.variance, 1.0 / (e.se * e.se));
            Some(Belief {
                mean: (a * p.mean + b * e.net_per_partner) / (a + b),
                variance: 1.0 / (a + b),
            })
        }
    }
}

/// The probability that each scheme has the highest net value, from `draws`
/// joint draws of the beliefs seeded by `seed`. Schemes without a belief are
/// left out (`None`).
pub fn probability_best(beliefs: &[Option<Belief>], draws: usize, seed: u64) -> Vec<Option<f64>> {
    let present: Vec<(usize, Belief)> = beliefs
        .iter()
        .enumerate()
        .filter_map(|(i, b)| b.map(|b| (i, b)))
        .collect();
    let mut wins = vec![0usize; beliefs.len()];
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for _ in 0..draws {
        let mut best: Option<(usize, f64)> = None;
        for (index, belief) in &present {
            let z: f64 = StandardNormal.sample(&mut rng);
            let value = belief.mean + belief.variance.max(0.0).sqrt() * z;
            if best.is_none_or(|(_, v)| value > v) {
                best = Some((*index, value));
            }
        }
        if let Some((index, _)) = best {
            wins[index] += 1;
        }
    }
    beliefs
        .iter()
        .enumerate()
        .map(|(i, b)| b.map(|_| wins[i] as f64 / draws.max(1) as f64))
        .collect()
}

/// What ops and the configuration allow for one scheme in one segment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SchemeLimits {
    /// Lowest weight (unless switched off).
    pub floor: f64,
    /// Highest weight.
    pub cap: f64,
    /// A fixed weight.
    pub pinned: Option<f64>,
    /// Switched off: weight 0.
    pub off: bool,
}

impl Default for SchemeLimits {
    fn default() -> Self {
        Self {
            floor: 0.0,
            cap: 1.0,
            pinned: None,
            off: false,
        }
    }
}

/// Whether ops force a scheme of the segment further than the max step:
/// switching one off, capping one below its weight minus the step, or
/// pinning one more than a step away. Ops' limits win, and the max step of
/// the other schemes is widened so the weight can go somewhere
/// ([`displaced_by_ops`]).
pub fn forced_by_ops(limits: &[SchemeLimits], previous: Option<&[f64]>, max_step: f64) -> bool {
    let Some(previous) = previous else {
        return false;
    };
    limits.iter().zip(previous).any(|(l, p)| {
        (l.off && *p > 0.0)
            || l.cap.max(l.floor) < p - max_step
            || l.pinned.is_some_and(|w| (w - p).abs() > max_step)
    })
}

/// How much weight ops move beyond the max step: per scheme switched off,
/// pinned or capped, how much further than a step its weight must go,
/// summed. The other schemes may move by the max step plus this much, so
/// they absorb what ops moved and no more.
pub fn displaced_by_ops(limits: &[SchemeLimits], previous: &[f64], max_step: f64) -> f64 {
    limits
        .iter()
        .zip(previous)
        .map(|(l, p)| {
            let to = if l.off {
                0.0
            } else if let Some(weight) = l.pinned {
                weight
            } else {
                p.min(l.cap.max(l.floor))
            };
            ((to - p).abs() - max_step).max(0.0)
        })
        .sum()
}

/// Each scheme's bounds: pinned and off fix it; otherwise floor and cap,
/// narrowed to `previous +- max_step`. When ops force a change
/// ([`forced_by_ops`]) the step is widened by [`displaced_by_ops`], and
/// dropped where even that cannot sum to 1.
pub fn bounds(limits: &[SchemeLimits], previous: Option<&[f64]>, max_step: f64) -> Vec<(f64, f64)> {
    let with_step = |step: Option<f64>| -> Vec<(f64, f64)> {
        limits
            .iter()
            .enumerate()
            .map(|(i, l)| {
                if l.off {
                    return (0.0, 0.0);
                }
                if let Some(weight) = l.pinned {
                    return (weight, weight);
                }
                let (mut low, mut high) = (l.floor, l.cap.max(l.floor));
                if let (Some(previous), Some(step)) = (previous, step) {
                    low = low.max(previous[i] - step).min(high);
                    high = high.min(previous[i] + step).max(low);
                }
                (low, high)
            })
            .collect()
    };
    let Some(previous_weights) = previous.filter(|_| forced_by_ops(limits, previous, max_step))
    else {
        return with_step(Some(max_step));
    };
    let widened = with_step(Some(
        max_step + displaced_by_ops(limits, previous_weights, max_step),
    ));
    let lower: f64 = widened.iter().map(|b| b.0).sum();
    let upper: f64 = widened.iter().map(|b| b.1).sum();
    if lower <= 1.0 + 1e-9 && upper >= 1.0 - 1e-9 {
        widened
    } else {
        with_step(None)
    }
}

/// The point of `{w : sum w = 1, low_i <= w_i <= high_i}` nearest to
/// `target`: `w_i = clamp(target_i - nu, low_i, high_i)` with `nu` found by
/// bisection. An error when the bounds cannot bracket 1.
pub fn project(target: &[f64], bounds: &[(f64, f64)]) -> Result<Vec<f64>, TuningError> {
    if target.is_empty() {
        return Err(TuningError::NoSchemes);
    }
    let lower: f64 = bounds.iter().map(|b| b.0).sum();
    let upper: f64 = bounds.iter().map(|b| b.1).sum();
    const SLACK: f64 = 1e-9;
    if lower > 1.0 + SLACK || upper < 1.0 - SLACK || bounds.iter().any(|b| b.0 > b.1 + SLACK) {
        return Err(TuningError::Infeasible { lower, upper });
    }
    let inside = target
        .iter()
        .zip(bounds)
        .all(|(t, (low, high))| *low <= *t && t <= high);
    if inside && (target.iter().sum::<f64>() - 1.0).abs() <= 1e-12 {
        // Already feasible: the nearest point is the target itself.
        return Ok(target.to_vec());
    }
    let at = |nu: f64| -> Vec<f64> {
        target
            .iter()
            .zip(bounds)
            .map(|(t, (low, high))| (t - nu).clamp(*low, high.max(*low)))
            .collect()
    };
    let sum = |w: &[f64]| w.iter().sum::<f64>();
    let spread = target.iter().fold(0.0f64, |m, t| m.max(t.abs())) + 2.0;
    let (mut low_nu, mut high_nu) = (-spread, spread);
    for _ in 0..200 {
        let mid = 0.5 * (low_nu + high_nu);
        if sum(&at(mid)) > 1.0 {
            low_nu = mid;
        } else {
            high_nu = mid;
        }
    }
    let mut weights = at(0.5 * (low_nu + high_nu));
    // Remove the bisection's last rounding from the schemes strictly inside
    // their bounds, so the weights sum to 1 to machine precision.
    let error = sum(&weights) - 1.0;
    let free: Vec<usize> = (0..weights.len())
        .filter(|i| weights[*i] > bounds[*i].0 && weights[*i] < bounds[*i].1)
        .collect();
    if !free.is_empty() {
        for i in &free {
            weights[*i] -= error / free.len() as f64;
        }
    }
    Ok(weights)
}

/// The weights within `bounds` (summing to 1) that maximise `sum w_i
/// values_i`: every scheme at its lower bound, then the rest to the best
/// schemes in turn up to their upper bounds (the optimum of this linear
/// program). Ties go to the earlier scheme.
pub fn best_allocation(values: &[f64], bounds: &[(f64, f64)]) -> Result<Vec<f64>, TuningError> {
    if values.is_empty() {
        return Err(TuningError::NoSchemes);
    }
    let lower: f64 = bounds.iter().map(|b| b.0).sum();
    let upper: f64 = bounds.iter().map(|b| b.1).sum();
    if lower > 1.0 + 1e-9 || upper < 1.0 - 1e-9 {
        return Err(TuningError::Infeasible { lower, upper });
    }
    let mut weights: Vec<f64> = bounds.iter().map(|b| b.0).collect();
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|a, b| values[*b].total_cmp(&values[*a]).then(a.cmp(b)));
    let mut left = 1.0 - lower;
    for i in order {
        let add = (bounds[i].1 - bounds[i].0).min(left).max(0.0);
        weights[i] += add;
        left -= add;
    }
    Ok(weights)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn belief(mean: f64, sd: f64) -> Option<Belief> {
        Some(Belief {
            mean,
            variance: sd * sd,
        })
    }

    #[test]
    fn the_best_allocation_fills_the_best_schemes_up_to_their_bounds() {
        let bounds = [(0.05, 0.4), (0.05, 1.0), (0.05, 1.0)];
        let w = best_allocation(&[3.0, 1.0, 2.0], &bounds).expect("feasible");
        for (got, want) in w.iter().zip([0.4, 0.05, 0.55]) {
            assert!((got - want).abs() < 1e-12, "{w:?}");
        }
        assert!(best_allocation(&[1.0], &[(0.0, 0.5)]).is_err());
    }

    #[test]
    fn forgetting_widens_the_prior_before_the_update() {
        let prior = belief(3.0, 2.0);
        let evidence = Some(Evidence {
            net_per_partner: 0.0,
            se: 2.0,
        });
        let kept = update(prior, evidence, 1.0).expect("posterior");
        let faded = update(prior, evidence, 0.5).expect("posterior");
        assert!((kept.mean - 1.5).abs() < 1e-12);
        // Prior variance 8 vs evidence 4: the evidence weighs twice as much.
        assert!((faded.mean - 1.0).abs() < 1e-12);
        assert!(faded.variance > kept.variance);
        assert_eq!(update(None, None, 0.7), None);
    }

    #[test]
    fn evidence_far_from_the_prior_is_a_change_and_the_prior_is_mostly_forgotten() {
        let prior = belief(10.0, 1.0);
        let evidence = Some(Evidence {
            net_per_partner: 0.0,
            se: 1.0,
        });
        // z = 10 / sqrt(2) > 2: the prior's variance x 10 before the update.
        let posterior = update(prior, evidence, 1.0).expect("posterior");
        assert!(
            (posterior.mean - 10.0 / 11.0).abs() < 1e-12,
            "{posterior:?}"
        );
    }

    #[test]
    fn the_pooled_prior_shrinks_to_the_fixed_mean_when_segments_agree() {
        let agree = [5.0, 5.1, 4.9].map(|m| Evidence {
            net_per_partner: m,
            se: 1.0,
        });
        let pooled = pooled_prior(&agree).expect("prior");
        assert!((pooled.mean - 5.0).abs() < 1e-9);
        // tau2 = 0, floored at a typical segment's own variance (1).
        assert!((pooled.variance - (1.0 + 1.0 / 3.0)).abs() < 1e-9);
        let disagree = [0.0, 10.0, 20.0].map(|m| Evidence {
            net_per_partner: m,
            se: 1.0,
        });
        assert!(pooled_prior(&disagree).expect("prior").variance > 50.0);
        assert_eq!(pooled_prior(&agree[..1]), None);
    }

    #[test]
    fn a_clear_winner_is_best_with_probability_near_one_and_draws_are_seeded() {
        let beliefs = [belief(10.0, 1.0), belief(0.0, 1.0), None, belief(9.0, 1.0)];
        let p = probability_best(&beliefs, 4000, 3);
        assert_eq!(p, probability_best(&beliefs, 4000, 3));
        assert_eq!(p[2], None);
        let p: Vec<f64> = p.into_iter().map(|p| p.unwrap_or(0.0)).collect();
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(p[0] > 0.7 && p[3] > 0.15 && p[1] < 0.001, "{p:?}");
    }

    #[test]
    fn the_projection_honours_floor_step_cap_pin_and_off() {
        let limits = [
            SchemeLimits {
                floor: 0.05,
                ..SchemeLimits::default()
            },
            SchemeLimits {
                floor: 0.05,
                cap: 0.3,
                ..SchemeLimits::default()
            },
            SchemeLimits {
                pinned: Some(0.2),
                ..SchemeLimits::default()
            },
            SchemeLimits {
                floor: 0.05,
                ..SchemeLimits::default()
            },
        ];
        let previous = [0.25, 0.25, 0.2, 0.3];
        let b = bounds(&limits, Some(&previous), 0.15);
        let w = project(&[0.9, 0.1, 0.0, 0.0], &b).expect("feasible");
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{w:?}");
        assert!((w[0] - 0.40).abs() < 1e-9, "max step up: {w:?}");
        assert_eq!(w[2], 0.2);
        assert!(w[3] >= 0.15 - 1e-12, "max step down: {w:?}");
        // Switching scheme 3 off lifts the max step: it goes to 0.
        let mut off = limits;
        off[3].off = true;
        let w =
            project(&[0.9, 0.1, 0.0, 0.0], &bounds(&off, Some(&previous), 0.15)).expect("feasible");
        assert_eq!(w[3], 0.0);
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        // Floors that cannot fit.
        let tight = [SchemeLimits {
            floor: 0.4,
            ..SchemeLimits::default()
        }; 3];
        assert!(matches!(
            project(&[0.3; 3], &bounds(&tight, None, 0.15)),
            Err(TuningError::Infeasible { .. })
        ));
    }
}
