//! The generator's world: archetypes, schemes and the true effect table.
//!
//! An **archetype** is the latent kind of partner the generator draws from;
//! segtune never sees it (it lives in `truth/`). Four archetypes are meant to
//! be found by clustering (top performers, growth partners, steady
//! contributors, low engagement); two are meant for rules (new partners with
//! tenure under 6 months, dormant partners with no recent activity).
//!
//! Effects and costs are set in standard deviations of the archetype's
//! quarterly revenue, so that "how hard is this to detect" reads the same for
//! a top performer selling millions and a low-engagement reseller selling
//! thousands. These numbers are frozen: tests hold them (data/README.md).

use serde::Serialize;

/// The latent partner kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Archetype {
    /// Large, engaged, growing a little.
    TopPerformer,
    /// Mid-sized, growing fast, engaged.
    GrowthPartner,
    /// Mid-sized, flat, moderately engaged.
    SteadyContributor,
    /// Small, flat or shrinking, rarely engaged.
    LowEngagement,
    /// Joined in the last six months.
    New,
    /// No recent activity.
    Dormant,
}

impl Archetype {
    /// Every archetype, in index order.
    pub const ALL: [Archetype; 6] = [
        Archetype::TopPerformer,
        Archetype::GrowthPartner,
        Archetype::SteadyContributor,
        Archetype::LowEngagement,
        Archetype::New,
        Archetype::Dormant,
    ];

    /// The four archetypes meant for clustering (the other two are for rules).
    pub const CLUSTERED: [Archetype; 4] = [
        Archetype::TopPerformer,
        Archetype::GrowthPartner,
        Archetype::SteadyContributor,
        Archetype::LowEngagement,
    ];

    /// Position in [`Archetype::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The snake_case name written to `truth/`.
    pub fn name(self) -> &'static str {
        match self {
            Archetype::TopPerformer => "top_performer",
            Archetype::GrowthPartner => "growth_partner",
            Archetype::SteadyContributor => "steady_contributor",
            Archetype::LowEngagement => "low_engagement",
            Archetype::New => "new",
            Archetype::Dormant => "dormant",
        }
    }

    /// The parameters the features are drawn from.
    pub fn profile(self) -> &'static Profile {
        &PROFILES[self.index()]
    }
}

/// How an archetype's partners look. Units: money in the vendor's currency,
/// rates in [0, 1], engagement on a latent standard-normal scale.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    /// Share of partners in the first period.
    pub initial_share: f64,
    /// Median quarterly revenue.
    pub revenue_median: f64,
    /// Log-scale standard deviation of quarterly revenue across partners.
    pub revenue_sigma: f64,
    /// Mean year-over-year revenue growth.
    pub growth_mean: f64,
    /// Spread of growth across partners.
    pub growth_sd: f64,
    /// Mean of the latent engagement factor.
    pub engagement_mean: f64,
    /// Mean win rate of registered deals.
    pub win_rate_mean: f64,
    /// Mean share of the MDF allocation used.
    pub mdf_mean: f64,
    /// Mean tenure in months beyond the first six.
    pub tenure_mean: f64,
    /// Chance of selling each of the nine optional product lines.
    pub product_line_p: f64,
    /// Mean days since the last registered deal.
    pub days_since_deal_mean: f64,
    /// Partner-type mix: reseller, msp, distributor, installer, referral.
    pub partner_type_mix: [f64; 5],
}

/// Frozen archetype profiles, in [`Archetype::ALL`] order.
pub const PROFILES: [Profile; 6] = [
    Profile {
        initial_share: 0.08,
        revenue_median: 90_000.0,
        revenue_sigma: 1.0,
        growth_mean: 0.10,
        growth_sd: 0.15,
        engagement_mean: 1.2,
        win_rate_mean: 0.42,
        mdf_mean: 0.75,
        tenure_mean: 80.0,
        product_line_p: 0.50,
        days_since_deal_mean: 9.0,
        partner_type_mix: [0.35, 0.20, 0.30, 0.10, 0.05],
    },
    Profile {
        initial_share: 0.17,
        revenue_median: 9_000.0,
        revenue_sigma: 1.1,
        growth_mean: 0.50,
        growth_sd: 0.12,
        engagement_mean: 0.8,
        win_rate_mean: 0.33,
        mdf_mean: 0.65,
        tenure_mean: 16.0,
        product_line_p: 0.30,
        days_since_deal_mean: 14.0,
        partner_type_mix: [0.30, 0.40, 0.05, 0.15, 0.10],
    },
    Profile {
        initial_share: 0.30,
        revenue_median: 24_000.0,
        revenue_sigma: 1.0,
        growth_mean: 0.02,
        growth_sd: 0.08,
        engagement_mean: 0.0,
        win_rate_mean: 0.30,
        mdf_mean: 0.45,
        tenure_mean: 70.0,
        product_line_p: 0.32,
        days_since_deal_mean: 22.0,
        partner_type_mix: [0.45, 0.20, 0.05, 0.20, 0.10],
    },
    Profile {
        initial_share: 0.27,
        revenue_median: 2_000.0,
        revenue_sigma: 1.2,
        growth_mean: -0.10,
        growth_sd: 0.20,
        engagement_mean: -1.2,
        win_rate_mean: 0.20,
        mdf_mean: 0.20,
        tenure_mean: 40.0,
        product_line_p: 0.12,
        days_since_deal_mean: 55.0,
        partner_type_mix: [0.40, 0.10, 0.02, 0.28, 0.20],
    },
    Profile {
        initial_share: 0.08,
        revenue_median: 1_500.0,
        revenue_sigma: 1.0,
        growth_mean: 0.0,
        growth_sd: 0.0,
        engagement_mean: 0.3,
        win_rate_mean: 0.25,
        mdf_mean: 0.30,
        tenure_mean: 0.0,
        product_line_p: 0.10,
        days_since_deal_mean: 30.0,
        partner_type_mix: [0.35, 0.30, 0.02, 0.18, 0.15],
    },
    Profile {
        initial_share: 0.10,
        revenue_median: 150.0,
        revenue_sigma: 1.2,
        growth_mean: -0.55,
        growth_sd: 0.20,
        engagement_mean: -2.0,
        win_rate_mean: 0.10,
        mdf_mean: 0.05,
        tenure_mean: 50.0,
        product_line_p: 0.04,
        days_since_deal_mean: 250.0,
        partner_type_mix: [0.40, 0.10, 0.02, 0.25, 0.23],
    },
];

/// Where a partner of the row's archetype goes when it drifts (columns in
/// [`Archetype::ALL`] order; never into `new`: new partners join as new ids).
pub const DRIFT_TARGETS: [[f64; 6]; 6] = [
    [0.00, 0.20, 0.60, 0.15, 0.0, 0.05],
    [0.35, 0.00, 0.45, 0.15, 0.0, 0.05],
    [0.15, 0.25, 0.00, 0.45, 0.0, 0.15],
    [0.05, 0.15, 0.35, 0.00, 0.0, 0.45],
    [0.45, 0.20, 0.00, 0.35, 0.0, 0.00], // unused: new partners graduate instead
    [0.10, 0.00, 0.20, 0.70, 0.0, 0.00],
];

/// Where a new partner goes once its tenure reaches six months.
pub const GRADUATION: [f64; 6] = [0.0, 0.60, 0.10, 0.30, 0.0, 0.0];

/// Chance per period that a dormant partner leaves the program.
pub const DORMANT_LEAVE_RATE: f64 = 0.10;

/// Partners joining per period, as a share of the first period's partners
/// (they join as `new`, with a new id).
pub const JOIN_RATE: f64 = 0.04;

/// Partner types, regions and tiers (categorical columns).
pub const PARTNER_TYPES: [&str; 5] = ["reseller", "msp", "distributor", "installer", "referral"];
/// Regions and their shares.
pub const REGIONS: [(&str, f64); 4] = [
    ("NA", 0.40),
    ("EMEA", 0.30),
    ("APAC", 0.20),
    ("LATAM", 0.10),
];
/// Tiers, lowest first.
pub const TIERS: [&str; 4] = ["registered", "silver", "gold", "platinum"];

/// One incentive scheme of the synthetic program.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Scheme {
    /// `scheme_id` as written to assignments.
    pub id: &'static str,
    /// A name for people.
    pub name: &'static str,
    /// Mean cost per treated partner, in SDs of the archetype's quarterly revenue.
    pub cost_sd: f64,
    /// Relative effect on deal registrations in the period.
    pub deal_effect: f64,
    /// Relative effect on certifications earned in the period.
    pub certification_effect: f64,
}

/// The five schemes, in column order of [`TRUE_LIFT_SD`].
pub const SCHEMES: [Scheme; 5] = [
    Scheme {
        id: "cert_bonus",
        name: "Certification bonus",
        cost_sd: 0.004,
        deal_effect: 0.0,
        certification_effect: 0.40,
    },
    Scheme {
        id: "deal_reg_spiff",
        name: "Deal-registration SPIFF",
        cost_sd: 0.008,
        deal_effect: 0.20,
        certification_effect: 0.0,
    },
    Scheme {
        id: "attach_bonus",
        name: "Product-attach bonus",
        cost_sd: 0.009,
        deal_effect: 0.03,
        certification_effect: 0.08,
    },
    Scheme {
        id: "new_market_bonus",
        name: "New-market bonus",
        cost_sd: 0.012,
        deal_effect: 0.10,
        certification_effect: 0.0,
    },
    Scheme {
        id: "cosell_fund",
        name: "Co-sell fund",
        cost_sd: 0.016,
        deal_effect: 0.06,
        certification_effect: 0.02,
    },
];

/// True mean revenue lift of each scheme (columns, [`SCHEMES`] order) on each
/// archetype (rows, [`Archetype::ALL`] order), in SDs of the archetype's
/// quarterly revenue. Individual effects vary around it (mean-one gamma).
pub const TRUE_LIFT_SD: [[f64; 5]; 6] = [
    [0.010, 0.035, 0.060, 0.050, 0.075],
    [0.025, 0.080, 0.030, 0.070, 0.020],
    [0.020, 0.030, 0.055, 0.010, 0.045],
    [0.060, 0.025, 0.000, -0.015, 0.010],
    [0.070, 0.040, 0.015, 0.030, 0.035],
    [0.010, 0.000, -0.015, 0.020, 0.000],
];

/// The skewed feature columns: the default transform takes their `log1p`
/// (the frozen-defaults check and the generated configuration use this list).
pub const LOG1P_FEATURES: [&str; 8] = [
    "revenue_12m",
    "deal_registrations_12m",
    "certifications",
    "training_hours_12m",
    "portal_logins_90d",
    "tenure_months",
    "active_customers",
    "days_since_last_deal",
];

/// Share of treated partners who take the scheme up at all (the rest cost 0).
pub const UPTAKE: f64 = 0.85;

/// The analytic standard deviation of an archetype's quarterly revenue
/// (log-normal with the profile's median and sigma): the unit of effects.
pub fn revenue_sd(archetype: Archetype) -> f64 {
    let profile = archetype.profile();
    let sigma2 = profile.revenue_sigma * profile.revenue_sigma;
    let mean = profile.revenue_median * (sigma2 / 2.0).exp();
    mean * (sigma2.exp() - 1.0).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_and_transition_rows_sum_to_one() {
        let total: f64 = PROFILES.iter().map(|p| p.initial_share).sum();
        assert!((total - 1.0).abs() < 1e-12);
        for (index, row) in DRIFT_TARGETS.iter().enumerate() {
            assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12, "row {index}");
            assert_eq!(row[index], 0.0, "drift must change the archetype");
        }
        assert!((GRADUATION.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        for profile in PROFILES {
            assert!((profile.partner_type_mix.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
    }

    #[test]
    fn revenue_is_heavy_tailed() {
        assert!(PROFILES.iter().all(|p| p.revenue_sigma >= 1.0));
    }
}
