//! The next period's draw: who is held out and who gets which scheme.
//!
//! Within a segment the draw is exact, not merely random in expectation: the
//! members are shuffled (seeded), the first round(h x n) are held out, and the
//! rest are dealt to schemes in counts that follow the weights by largest
//! remainder. Exact shares keep the holdout the size the power calculation
//! assumed, and make a sample-ratio check on the next period meaningful.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Counts per scheme for `n` partners, by largest remainder (ties to the lower index).
pub fn allocate(n: usize, weights: &[f64]) -> Vec<usize> {
    let total: f64 = weights.iter().sum();
    if weights.is_empty() || total <= 0.0 {
        return vec![0; weights.len()];
    }
    let exact: Vec<f64> = weights.iter().map(|w| w / total * n as f64).collect();
    let mut counts: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|a, b| {
        (exact[*b] - exact[*b].floor())
            .total_cmp(&(exact[*a] - exact[*a].floor()))
            .then(a.cmp(b))
    });
    let mut left = n - counts.iter().sum::<usize>();
    for index in order {
        if left == 0 {
            break;
        }
        counts[index] += 1;
        left -= 1;
    }
    counts
}

/// Draws for `n` members (in a caller-fixed order): `None` for holdout,
/// `Some(j)` for scheme j.
pub fn stratified_draw(
    n: usize,
    holdout_share: f64,
    weights: &[f64],
    seed: u64,
) -> Vec<Option<usize>> {
    stratified_draw_eligible(holdout_share, weights, seed, &vec![true; n])
}

/// As [`stratified_draw`], but only members with `eligible[i]` may be held
/// out (strategic partners, partners held out too often): the holdout is the
/// first round(h x n) eligible members of the shuffled order (fewer when
/// fewer are eligible), the rest are dealt to schemes. With every member
/// eligible it is exactly [`stratified_draw`].
pub fn stratified_draw_eligible(
    holdout_share: f64,
    weights: &[f64],
    seed: u64,
    eligible: &[bool],
) -> Vec<Option<usize>> {
    let n = eligible.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let wanted = ((holdout_share.clamp(0.0, 1.0) * n as f64).round() as usize).min(n);
    let mut held = 0;
    let mut dealt = Vec::with_capacity(n);
    for member in order {
        if held < wanted && eligible[member] {
            held += 1;
        } else {
            dealt.push(member);
        }
    }
    let counts = allocate(dealt.len(), weights);
    let mut out = vec![None; n];
    let mut position = 0;
    for (scheme, count) in counts.iter().enumerate() {
        for member in &dealt[position..position + count] {
            out[*member] = Some(scheme);
        }
        position += count;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_is_exact_by_largest_remainder() {
        assert_eq!(allocate(10, &[0.5, 0.3, 0.2]), vec![5, 3, 2]);
        assert_eq!(allocate(7, &[1.0, 1.0, 1.0]), vec![3, 2, 2]);
        assert_eq!(allocate(0, &[1.0]), vec![0]);
    }

    #[test]
    fn the_draw_holds_out_the_exact_share_and_follows_the_weights() {
        let draw = stratified_draw(1000, 0.1, &[0.6, 0.4], 5);
        assert_eq!(draw.iter().filter(|d| d.is_none()).count(), 100);
        assert_eq!(draw.iter().filter(|d| **d == Some(0)).count(), 540);
        assert_eq!(draw.iter().filter(|d| **d == Some(1)).count(), 360);
    }

    #[test]
    fn ineligible_members_are_never_held_out() {
        let eligible: Vec<bool> = (0..1000).map(|i| i % 4 != 0).collect();
        let draw = stratified_draw_eligible(0.1, &[0.6, 0.4], 5, &eligible);
        assert_eq!(draw.iter().filter(|d| d.is_none()).count(), 100);
        assert!((0..1000).all(|i| eligible[i] || draw[i].is_some()));
        // Fewer eligible than the share: all of them, no more.
        let few: Vec<bool> = (0..100).map(|i| i < 3).collect();
        let draw = stratified_draw_eligible(0.1, &[1.0], 5, &few);
        assert_eq!(draw.iter().filter(|d| d.is_none()).count(), 3);
    }

    #[test]
    fn the_draw_is_seeded() {
        assert_eq!(
            stratified_draw(50, 0.2, &[1.0, 1.0], 1),
            stratified_draw(50, 0.2, &[1.0, 1.0], 1)
        );
        assert_ne!(
            stratified_draw(50, 0.2, &[1.0, 1.0], 1),
            stratified_draw(50, 0.2, &[1.0, 1.0], 2)
        );
    }
}
