//! Properties of the tuner's projection and draws, on random inputs: the
//! weights sum to 1, floors, caps and the max step hold (the step unless ops
//! force a bigger change), pinned schemes keep their weight, switched-off schemes get 0, nothing is NaN, and the same
//! seed gives the same output.

use proptest::prelude::*;
use segtune_models::tuning::{
    bounds, displaced_by_ops, forced_by_ops, probability_best, project, Belief, SchemeLimits,
};

const MAX_STEP: f64 = 0.15;
const EPS: f64 = 1e-9;

/// A segment: previous weights (summing to 1), a target, and limits.
fn segment() -> impl Strategy<Value = (Vec<f64>, Vec<f64>, Vec<SchemeLimits>)> {
    (2usize..7).prop_flat_map(|n| {
        (
            prop::collection::vec(0.01f64..1.0, n),
            prop::collection::vec(0.0f64..1.0, n),
            prop::collection::vec((0.0f64..1.0, any::<u8>()), n),
            0.0f64..0.1,
        )
            .prop_map(move |(previous, target, kinds, floor)| {
                let total: f64 = previous.iter().sum();
                let previous: Vec<f64> = previous.iter().map(|p| p / total).collect();
                let limits = kinds
                    .iter()
                    .enumerate()
                    .map(|(i, (value, kind))| match kind % 8 {
                        // Pinned at the previous weight (as ops would pin).
                        0 => SchemeLimits {
                            floor,
                            pinned: Some(previous[i]),
                            ..SchemeLimits::default()
                        },
                        1 => SchemeLimits {
                            floor,
                            cap: floor + value * (1.0 - floor),
                            ..SchemeLimits::default()
                        },
                        2 if i > 0 => SchemeLimits {
                            floor,
                            off: true,
                            ..SchemeLimits::default()
                        },
                        _ => SchemeLimits {
                            floor,
                            ..SchemeLimits::default()
                        },
                    })
                    .collect();
                (previous, target, limits)
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn projected_weights_meet_every_limit((previous, target, limits) in segment()) {
        let b = bounds(&limits, Some(&previous), MAX_STEP);
        let Ok(weights) = project(&target, &b) else {
            // Infeasible limits are refused, never half met: check they are.
            let lower: f64 = b.iter().map(|b| b.0).sum();
            let upper: f64 = b.iter().map(|b| b.1).sum();
            prop_assert!(lower > 1.0 + 1e-9 || upper < 1.0 - 1e-9, "{b:?}");
            return Ok(());
        };
        prop_assert!(weights.iter().all(|w| w.is_finite()));
        prop_assert!((weights.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{weights:?}");
        let forced = forced_by_ops(&limits, Some(&previous), MAX_STEP);
        let displaced = displaced_by_ops(&limits, &previous, MAX_STEP);
        let widened_feasible = {
            // The bounds with the widened step, as `bounds` builds them.
            let step = MAX_STEP + displaced;
            let (mut lower, mut upper) = (0.0, 0.0);
            for (l, p) in limits.iter().zip(&previous) {
                let (low, high) = if l.off {
                    (0.0, 0.0)
                } else if let Some(w) = l.pinned {
                    (w, w)
                } else {
                    let high = l.cap.max(l.floor);
                    let low = l.floor.max(p - step).min(high);
                    (low, high.min(p + step).max(low))
                };
                lower += low;
                upper += high;
            }
            lower <= 1.0 + 1e-9 && upper >= 1.0 - 1e-9
        };
        for (i, (w, l)) in weights.iter().zip(&limits).enumerate() {
            if l.off {
                prop_assert_eq!(*w, 0.0);
                continue;
            }
            if let Some(pinned) = l.pinned {
                prop_assert!((w - pinned).abs() < EPS, "pinned {pinned} got {w}");
                continue;
            }
            prop_assert!(*w >= l.floor - EPS, "floor {} got {w}", l.floor);
            prop_assert!(*w <= l.cap.max(l.floor) + EPS, "cap {} got {w}", l.cap);
            if !forced {
                prop_assert!(
                    (w - previous[i]).abs() <= MAX_STEP + EPS,
                    "step from {} to {w}",
                    previous[i]
                );
            } else if (w - previous[i]).abs() > MAX_STEP + displaced + EPS {
                // Moving further than ops displaced is only allowed when
                // the widened step could not sum to 1.
                prop_assert!(!widened_feasible, "step from {} to {w}", previous[i]);
            }
        }
        // The same input, the same output.
        prop_assert_eq!(project(&target, &b).ok(), Some(weights));
    }

    #[test]
    fn probability_best_is_a_seeded_distribution(
        means in prop::collection::vec(-10.0f64..10.0, 1..6),
        sd in 0.0f64..5.0,
        seed in any::<u64>(),
    ) {
        let beliefs: Vec<Option<Belief>> = means
            .iter()
            .map(|m| Some(Belief { mean: *m, variance: sd * sd }))
            .collect();
        let p = probability_best(&beliefs, 500, seed);
        prop_assert_eq!(&p, &probability_best(&beliefs, 500, seed));
        let total: f64 = p.iter().map(|p| p.unwrap_or(f64::NAN)).sum();
        prop_assert!((total - 1.0).abs() < 1e-12);
    }
}
