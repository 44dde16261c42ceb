//! One slot's life over the generated periods.
//!
//! A **slot** is a seat in the program: N slots give N partners per period.
//! Its occupant keeps its id, persistent traits and tenure from period to
//! period; it may drift to another archetype, graduate from `new` after six
//! months, or (when dormant) leave, in which case a newly joined partner with
//! a new id takes the slot. Everything is drawn from keyed streams
//! ([`crate::rng`]), so a slot is simulated on its own, in any order.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Binomial, Distribution, Exp, Gamma, Poisson, StandardNormal};

use super::model::{
    revenue_sd, Archetype, DORMANT_LEAVE_RATE, DRIFT_TARGETS, GRADUATION, JOIN_RATE, REGIONS,
    SCHEMES, TIERS, TRUE_LIFT_SD, UPTAKE,
};
use crate::rng::{keyed_rng, period_key, Stream};

const ENGAGEMENT_PERSISTENT_SD: f64 = 0.30;
const ENGAGEMENT_PERIOD_SD: f64 = 0.10;
const RATE_CONCENTRATION: f64 = 40.0;
const TENURE_SHAPE: f64 = 4.0;
const DAYS_SHAPE: f64 = 3.0;

/// Persistent traits of one partner.
#[derive(Debug, Clone)]
pub(crate) struct Occupant {
    /// Period index in which it joined (negative: before the first period).
    pub joined_period: i64,
    /// Size factor, standard normal.
    pub size: f64,
    /// Engagement factor, standard normal.
    pub engagement: f64,
    /// Growth factor, standard normal.
    pub growth: f64,
    /// Individual multiplier of scheme effects (mean one).
    pub effect_multiplier: f64,
    pub partner_type: u8,
    pub region: u8,
}

/// A slot's partner in one period.
#[derive(Debug, Clone)]
pub(crate) struct SlotPeriod {
    pub archetype: Archetype,
    pub tenure_months: u32,
}

/// A slot over every period: `None` before its partner joined and after it left.
#[derive(Debug, Clone)]
pub(crate) struct SlotHistory {
    pub slot: u64,
    pub occupant: Occupant,
    pub periods: Vec<Option<SlotPeriod>>,
}

/// Partner ids: `P` and the slot number.
pub(crate) fn partner_id(slot: u64) -> String {
    format!("P{slot:07}")
}

/// Partners joining per period after the first.
pub(crate) fn joiners_per_period(n_partners: usize) -> usize {
    ((n_partners as f64) * JOIN_RATE).round() as usize
}

/// Slots needed: the first period's partners plus every later joiner.
pub(crate) fn total_slots(n_partners: usize, n_periods: usize) -> usize {
    n_partners + joiners_per_period(n_partners) * n_periods.saturating_sub(1)
}

fn pick(rng: &mut ChaCha8Rng, weights: &[f64]) -> usize {
    let total: f64 = weights.iter().sum();
    let mut u = rng.gen::<f64>() * total;
    for (index, weight) in weights.iter().enumerate() {
        if u < *weight {
            return index;
        }
        u -= weight;
    }
    weights.iter().rposition(|w| *w > 0.0).unwrap_or(0)
}

pub(crate) fn normal(rng: &mut ChaCha8Rng) -> f64 {
    rng.sample(StandardNormal)
}

pub(crate) fn gamma(rng: &mut ChaCha8Rng, shape: f64, mean: f64) -> f64 {
    if !(mean > 0.0 && shape > 0.0) {
        return 0.0;
    }
    Gamma::new(shape, mean / shape).map_or(mean, |d| d.sample(rng))
}

/// A Poisson count at quantile `u` (exact inversion below rate 30, the normal
/// approximation with `z` above): monotone in the rate for fixed `u` and `z`.
pub(crate) fn poisson_quantile(u: f64, z: f64, lambda: f64) -> i64 {
    if lambda.is_nan() || lambda <= 0.0 {
        return 0;
    }
    if lambda >= 30.0 {
        return (lambda + lambda.sqrt() * z).round().max(0.0) as i64;
    }
    let mut k = 0i64;
    let mut probability = (-lambda).exp();
    let mut cumulative = probability;
    while u > cumulative && k < 1_000 {
        k += 1;
        probability *= lambda / k as f64;
        cumulative += probability;
    }
    k
}

pub(crate) fn poisson(rng: &mut ChaCha8Rng, lambda: f64) -> i64 {
    if lambda.is_nan() || lambda <= 0.0 {
        return 0;
    }
    Poisson::new(lambda.min(1e9)).map_or(0, |d: Poisson<f64>| d.sample(rng) as i64)
}

fn beta(rng: &mut ChaCha8Rng, mean: f64, concentration: f64) -> f64 {
    let mean = mean.clamp(0.01, 0.99);
    Beta::new(mean * concentration, (1.0 - mean) * concentration).map_or(mean, |d| d.sample(rng))
}

fn new_occupant(seed: u64, slot: u64, joined_period: i64, archetype: Archetype) -> Occupant {
    let mut rng = keyed_rng(seed, Stream::Traits, [slot, 0, 0]);
    let size = normal(&mut rng);
    let engagement = normal(&mut rng);
    let growth = normal(&mut rng);
    let effect_multiplier = gamma(&mut rng, 4.0, 1.0);
    let partner_type = pick(&mut rng, &archetype.profile().partner_type_mix) as u8;
    let region_weights: Vec<f64> = REGIONS.iter().map(|(_, share)| *share).collect();
    let region = pick(&mut rng, &region_weights) as u8;
    Occupant {
        joined_period,
        size,
        engagement,
        growth,
        effect_multiplier,
        partner_type,
        region,
    }
}

/// Simulates one slot over `n_periods` periods with the given drift rate.
/// Slots below `n_partners` hold the first period's partners; later slots
/// hold partners who join, `joiners_per_period` per period.
pub(crate) fn simulate_slot(
    seed: u64,
    slot: u64,
    n_partners: usize,
    n_periods: usize,
    drift: f64,
) -> SlotHistory {
    let mut rng = keyed_rng(seed, Stream::Traits, [slot, u64::MAX, 0]);
    let (first_period, archetype, tenure, joined) = if (slot as usize) < n_partners {
        let shares: Vec<f64> = Archetype::ALL
            .iter()
            .map(|a| a.profile().initial_share)
            .collect();
        let archetype = Archetype::ALL[pick(&mut rng, &shares)];
        if archetype == Archetype::New {
            let tenure = rng.gen_range(1..=5u32);
            (0, archetype, tenure, if tenure <= 3 { 0 } else { -1 })
        } else {
            let tenure =
                6 + gamma(&mut rng, TENURE_SHAPE, archetype.profile().tenure_mean).round() as u32;
            (0, archetype, tenure, -1 - i64::from(tenure / 3))
        }
    } else {
        let per_period = joiners_per_period(n_partners).max(1);
        let first = 1 + (slot as usize - n_partners) / per_period;
        (first, Archetype::New, rng.gen_range(1..=3u32), first as i64)
    };
    let occupant = new_occupant(seed, slot, joined, archetype);
    let mut periods: Vec<Option<SlotPeriod>> = vec![None; n_periods];
    if first_period < n_periods {
        periods[first_period] = Some(SlotPeriod {
            archetype,
            tenure_months: tenure,
        });
    }
    for period in first_period + 1..n_periods {
        let Some(previous) = periods[period - 1].clone() else {
            break;
        };
        let mut rng = keyed_rng(seed, Stream::Drift, [slot, 0, period_key(period as i64)]);
        let leave = rng.gen::<f64>();
        let change = rng.gen::<f64>();
        if previous.archetype == Archetype::Dormant && leave < DORMANT_LEAVE_RATE {
            break;
        }
        let tenure = previous.tenure_months + 3;
        let archetype = if previous.archetype == Archetype::New {
            if tenure >= 6 {
                Archetype::ALL[pick(&mut rng, &GRADUATION)]
            } else {
                Archetype::New
            }
        } else if change < drift {
            Archetype::ALL[pick(&mut rng, &DRIFT_TARGETS[previous.archetype.index()])]
        } else {
            previous.archetype
        };
        periods[period] = Some(SlotPeriod {
            archetype,
            tenure_months: tenure,
        });
    }
    SlotHistory {
        slot,
        occupant,
        periods,
    }
}

/// Features, outcomes and truth of one slot in one period.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub partner_id: String,
    pub archetype: Archetype,
    /// Whether the partner was present when the period's scheme was drawn.
    pub in_draw: bool,
    pub revenue_12m: Option<f64>,
    pub revenue_growth: Option<f64>,
    pub deal_registrations_12m: Option<i64>,
    pub win_rate: Option<f64>,
    pub certifications: Option<i32>,
    pub training_hours_12m: Option<f64>,
    pub portal_logins_90d: Option<i32>,
    pub mdf_utilisation: Option<f64>,
    pub tenure_months: i32,
    pub active_customers: Option<i64>,
    pub product_lines_sold: i32,
    pub days_since_last_deal: Option<i32>,
    pub partner_type: &'static str,
    pub region: &'static str,
    pub tier: &'static str,
    /// Untreated revenue in the period.
    pub revenue_baseline: f64,
    /// Revenue in the previous quarter (null when it had not joined yet).
    pub revenue_pre: Option<f64>,
    /// Expected deal registrations and certifications in the period, untreated.
    pub deal_rate: f64,
    pub certification_rate: f64,
    pub effect_multiplier: f64,
    pub(crate) key: [u64; 3],
}

fn quarter_revenue(
    seed: u64,
    slot: u64,
    occupant: &Occupant,
    archetype: Archetype,
    quarter: i64,
) -> f64 {
    let profile = archetype.profile();
    let mut rng = keyed_rng(seed, Stream::Revenue, [slot, 0, period_key(quarter)]);
    let z = 0.9 * occupant.size + (1.0f64 - 0.81).sqrt() * normal(&mut rng);
    profile.revenue_median * (profile.revenue_sigma * z).exp()
}

impl SlotHistory {
    /// Archetype in `quarter`; before the slot's first period, the first period's.
    fn archetype_at(&self, quarter: i64) -> Archetype {
        let first = self
            .periods
            .iter()
            .flatten()
            .next()
            .map_or(Archetype::New, |p| p.archetype);
        usize::try_from(quarter)
            .ok()
            .and_then(|q| self.periods.get(q).cloned().flatten())
            .map_or(first, |p| p.archetype)
    }

    /// The snapshot of `period`, with features as of the period's end;
    /// `None` when the slot has no partner then.
    pub(crate) fn snapshot(&self, seed: u64, period: usize, null_rate: f64) -> Option<Snapshot> {
        let state = self.periods.get(period)?.as_ref()?;
        let occupant = &self.occupant;
        let archetype = state.archetype;
        let profile = archetype.profile();
        let p = period as i64;
        let months_in = |quarter: i64| -> f64 {
            let months = i64::from(state.tenure_months) - 3 * (p - quarter);
            months.clamp(0, 3) as f64 / 3.0
        };
        let revenue_of = |quarter: i64| -> f64 {
            let active = months_in(quarter);
            if active == 0.0 {
                return 0.0;
            }
            active
                * quarter_revenue(
                    seed,
                    self.slot,
                    occupant,
                    self.archetype_at(quarter),
                    quarter,
                )
        };
        let revenue_baseline = revenue_of(p);
        let revenue_pre = (months_in(p - 1) > 0.0).then(|| revenue_of(p - 1));
        let revenue_12m: f64 = (p - 3..=p).map(revenue_of).sum();
        let key = [self.slot, 0, period_key(p)];
        // Features are trailing-window measures: a partner's draws repeat from
        // period to period (a persistent stream, keyed without the period) and
        // move only with its engagement's small period shock, its revenue and
        // its archetype. Period-to-period churn of the features is therefore
        // as low as in real trailing-twelve-month data.
        // One persistent substream per feature, so that one feature's draws
        // never shift another's, and counts drawn by quantile (monotone in
        // their rate), so that a small change of rate moves a count a little.
        let stream = |feature: u64| keyed_rng(seed, Stream::Features, [self.slot, feature, 0]);
        let period_shock = normal(&mut keyed_rng(seed, Stream::Features, key));
        let dormant = archetype == Archetype::Dormant;
        let engagement = profile.engagement_mean
            + ENGAGEMENT_PERSISTENT_SD * occupant.engagement
            + ENGAGEMENT_PERIOD_SD * period_shock;
        let log_size = (revenue_12m.max(1.0)).ln();
        let portal_logins = {
            let mut rng = stream(1);
            let (u, z) = (rng.gen::<f64>(), normal(&mut rng));
            if dormant {
                if u < 0.92 {
                    0
                } else {
                    poisson_quantile((u - 0.92) / 0.08, z, 1.5)
                }
            } else {
                poisson_quantile(u, z, (2.3 + 0.75 * engagement).exp())
            }
        };
        let training = {
            let mean = (1.8 + 0.8 * engagement).exp() * if dormant { 0.3 } else { 1.0 };
            (gamma(&mut stream(2), 2.0, mean) * 2.0).round() / 2.0
        };
        let certifications = {
            let mut rng = stream(3);
            let (u, z) = (rng.gen::<f64>(), normal(&mut rng));
            poisson_quantile(u, z, (0.2 + 0.5 * engagement + 0.25 * occupant.size).exp())
        };
        let tenure_share = (f64::from(state.tenure_months) / 12.0).min(1.0);
        let deal_mean = if dormant {
            0.3
        } else {
            (1.6 + 0.35 * (log_size - 11.0) + 0.35 * engagement).exp() * tenure_share
        };
        let deals = {
            let mut rng = stream(4);
            let intensity = gamma(&mut rng, 3.0, deal_mean);
            let (u, z) = (rng.gen::<f64>(), normal(&mut rng));
            poisson_quantile(u, z, intensity)
        };
        let win_rate = beta(&mut stream(5), profile.win_rate_mean, RATE_CONCENTRATION);
        let mdf = beta(&mut stream(6), profile.mdf_mean, RATE_CONCENTRATION / 2.0);
        let customers = {
            let mut rng = stream(7);
            let intensity = gamma(
                &mut rng,
                3.0,
                (0.8 + 0.5 * (log_size - 10.0)).exp() * if dormant { 0.5 } else { 1.0 },
            );
            let (u, z) = (rng.gen::<f64>(), normal(&mut rng));
            poisson_quantile(u, z, intensity)
        };
        let product_lines = 1 + Binomial::new(9, profile.product_line_p)
            .map_or(0, |d| d.sample(&mut stream(8))) as i32;
        let days_since_deal = {
            let mut rng = stream(9);
            let days = if dormant {
                180.0 + Exp::new(1.0 / 250.0).map_or(250.0, |d| d.sample(&mut rng))
            } else {
                gamma(&mut rng, DAYS_SHAPE, profile.days_since_deal_mean)
            };
            days.min(f64::from(state.tenure_months) * 30.5 + 15.0)
                .round() as i32
        };
        let growth = profile.growth_mean
            + profile.growth_sd * (0.8 * occupant.growth + 0.6 * normal(&mut stream(10)));
        let tier_score = revenue_12m.max(1.0).ln()
            + 0.35 * normal(&mut stream(11))
            + 0.08 * certifications as f64;
        let tier = match tier_score {
            s if s > 13.4 => 3,
            s if s > 12.1 => 2,
            s if s > 10.6 => 1,
            _ => 0,
        };
        // Missing values persist too (a field a partner never fills stays empty).
        let mut nulls = keyed_rng(seed, Stream::Nulls, [self.slot, 0, 0]);
        let mut keep = |rate: f64| nulls.gen::<f64>() >= rate;
        let deal_rate = deal_mean / 4.0;
        let certification_rate = 0.25 * (0.5 * engagement).exp();
        Some(Snapshot {
            partner_id: partner_id(self.slot),
            archetype,
            in_draw: occupant.joined_period < p,
            revenue_12m: keep(null_rate / 3.0).then_some((revenue_12m * 100.0).round() / 100.0),
            revenue_growth: (state.tenure_months >= 12 && keep(null_rate))
                .then_some((growth * 1e4).round() / 1e4),
            deal_registrations_12m: keep(null_rate / 2.0).then_some(deals),
            win_rate: (deals > 0 && keep(null_rate)).then_some((win_rate * 1e4).round() / 1e4),
            certifications: keep(null_rate / 2.0).then_some(certifications as i32),
            training_hours_12m: keep(null_rate).then_some(training),
            portal_logins_90d: keep(null_rate / 2.0).then_some(portal_logins as i32),
            mdf_utilisation: (tier > 0 && keep(null_rate)).then_some((mdf * 1e4).round() / 1e4),
            tenure_months: state.tenure_months as i32,
            active_customers: keep(null_rate).then_some(customers),
            product_lines_sold: product_lines,
            days_since_last_deal: keep(null_rate).then_some(days_since_deal),
            partner_type: super::model::PARTNER_TYPES[usize::from(occupant.partner_type)],
            region: REGIONS[usize::from(occupant.region)].0,
            tier: TIERS[tier],
            revenue_baseline,
            revenue_pre,
            deal_rate,
            certification_rate,
            effect_multiplier: occupant.effect_multiplier,
            key,
        })
    }
}

/// What happens to one partner in one period under one scheme (or holdout).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Realised {
    /// Revenue in the period, with the scheme's effect.
    pub revenue: f64,
    /// Deal registrations in the period.
    pub deal_registrations: i64,
    /// Certifications earned in the period.
    pub certifications_earned: i64,
    /// The scheme's true effect on this partner's revenue (0 for holdout).
    pub effect_revenue: f64,
    /// True effect on expected deal registrations.
    pub effect_deal_registrations: f64,
    /// True effect on expected certifications.
    pub effect_certifications: f64,
    /// What the scheme paid this partner.
    pub cost: f64,
}

impl Snapshot {
    /// The outcome under `scheme` (an index into [`SCHEMES`]; `None` = holdout).
    /// Random draws do not depend on the scheme (common random numbers).
    /// `lift_factor` scales the scheme's true revenue lift (1 normally, 0
    /// where a simulated shock removed it).
    pub(crate) fn realise(&self, seed: u64, scheme: Option<usize>, lift_factor: f64) -> Realised {
        let mut rng = keyed_rng(seed, Stream::Outcome, self.key);
        let mut cost_rng = keyed_rng(seed, Stream::Cost, self.key);
        let deal_uniform_seed = rng.gen::<u64>();
        let cert_uniform_seed = rng.gen::<u64>();
        let takes_up = cost_rng.gen::<f64>() < UPTAKE;
        let cost_draw = gamma(&mut cost_rng, 3.0, 1.0) / UPTAKE;
        let sd = revenue_sd(self.archetype);
        let (effect_revenue, deal_effect, cert_effect, cost) = match scheme {
            None => (0.0, 0.0, 0.0, 0.0),
            Some(index) => {
                let spec = &SCHEMES[index];
                let lift = TRUE_LIFT_SD[self.archetype.index()][index]
                    * sd
                    * self.effect_multiplier
                    * lift_factor;
                let cost = if takes_up {
                    spec.cost_sd * sd * cost_draw
                } else {
                    0.0
                };
                (lift, spec.deal_effect, spec.certification_effect, cost)
            }
        };
        let deal_mean = self.deal_rate * (1.0 + deal_effect);
        let cert_mean = self.certification_rate * (1.0 + cert_effect);
        let deals = poisson(
            &mut keyed_rng(deal_uniform_seed, Stream::Outcome, [0, 0, 0]),
            deal_mean,
        );
        let certs = poisson(
            &mut keyed_rng(cert_uniform_seed, Stream::Outcome, [0, 0, 0]),
            cert_mean,
        );
        Realised {
            revenue: ((self.revenue_baseline + effect_revenue) * 100.0).round() / 100.0,
            deal_registrations: deals,
            certifications_earned: certs,
            effect_revenue,
            effect_deal_registrations: self.deal_rate * deal_effect,
            effect_certifications: self.certification_rate * cert_effect,
            cost: (cost * 100.0).round() / 100.0,
        }
    }

    /// The expected revenue lift and expected cost of `scheme` for this
    /// partner (the cost's expectation over take-up and size is
    /// `cost_sd x revenue sd`, as in the truth table).
    pub(crate) fn expected_value(&self, scheme: usize, lift_factor: f64) -> (f64, f64) {
        let sd = revenue_sd(self.archetype);
        let spec = &SCHEMES[scheme];
        (
            TRUE_LIFT_SD[self.archetype.index()][scheme]
                * sd
                * self.effect_multiplier
                * lift_factor,
            spec.cost_sd * sd,
        )
    }

    /// The generator's own draw: holdout first at `holdout_share`, then one
    /// of the schemes at equal weights.
    pub(crate) fn draw(&self, seed: u64, holdout_share: f64) -> Option<usize> {
        let mut rng = keyed_rng(seed, Stream::Assignment, self.key);
        if rng.gen::<f64>() < holdout_share {
            None
        } else {
            Some(rng.gen_range(0..SCHEMES.len()))
        }
    }
}
