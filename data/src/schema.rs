//! Column names and Arrow schemas of the tables segtune reads and the
//! generator writes. data/SCHEMA.md is the human-readable copy; a test checks
//! the two agree.
//!
//! Inputs are checked by *role*, not by exact type: any Arrow integer or
//! floating type is numeric, as the contract says, so files written by pandas
//! (int64), Spark (int32) or DuckDB (decimal excluded) are all accepted.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema};

/// The key of every partner-level table.
pub const PARTNER_ID: &str = "partner_id";
/// The scheme a partner got (`holdout` for the control group).
pub const SCHEME_ID: &str = "scheme_id";
/// What the scheme paid out.
pub const COST: &str = "cost";
/// The stratum a partner was drawn in.
pub const SEGMENT_ID: &str = "segment_id";

/// Whether an Arrow type counts as numeric (any integer or float).
pub fn is_numeric(data_type: &DataType) -> bool {
    data_type.is_integer() || data_type.is_floating()
}

/// Whether an Arrow type counts as text.
pub fn is_text(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    ) || matches!(data_type, DataType::Dictionary(_, value) if matches!(**value, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View))
}

/// Numeric feature columns the generator writes, with their Arrow types.
pub const GENERATED_FEATURES: [(&str, DataType); 12] = [
    ("revenue_12m", DataType::Float64),
    ("revenue_growth", DataType::Float64),
    ("deal_registrations_12m", DataType::Int64),
    ("win_rate", DataType::Float64),
    ("certifications", DataType::Int32),
    ("training_hours_12m", DataType::Float64),
    ("portal_logins_90d", DataType::Int32),
    ("mdf_utilisation", DataType::Float64),
    ("tenure_months", DataType::Int32),
    ("active_customers", DataType::Int64),
    ("product_lines_sold", DataType::Int32),
    ("days_since_last_deal", DataType::Int32),
];

/// Categorical columns the generator writes.
pub const GENERATED_CATEGORICALS: [&str; 3] = ["partner_type", "region", "tier"];

/// Schema of a generated partners table.
pub fn generated_partners() -> Arc<Schema> {
    let mut fields = vec![Field::new(PARTNER_ID, DataType::Utf8, false)];
    for (name, data_type) in GENERATED_FEATURES {
        fields.push(Field::new(
            name,
            data_type,
            name != "tenure_months" && name != "product_lines_sold",
        ));
    }
    for name in GENERATED_CATEGORICALS {
        fields.push(Field::new(name, DataType::Utf8, false));
    }
    Arc::new(Schema::new(fields))
}

/// Schema of an assignments table.
pub fn assignments() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new(PARTNER_ID, DataType::Utf8, false),
        Field::new(SCHEME_ID, DataType::Utf8, false),
        Field::new(COST, DataType::Float64, false),
        Field::new(SEGMENT_ID, DataType::UInt32, true),
    ]))
}

/// Schema of a generated outcomes table.
pub fn generated_outcomes() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new(PARTNER_ID, DataType::Utf8, false),
        Field::new("revenue", DataType::Float64, false),
        Field::new("revenue_pre", DataType::Float64, true),
        Field::new("deal_registrations", DataType::Int64, false),
        Field::new("certifications_earned", DataType::Int64, false),
    ]))
}

/// Schema of `truth/<period>/archetypes.parquet`.
pub fn truth_archetypes() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new(PARTNER_ID, DataType::Utf8, false),
        Field::new("archetype", DataType::Utf8, false),
        Field::new("previous_archetype", DataType::Utf8, true),
    ]))
}

/// Schema of `truth/<period>/effects.parquet`.
pub fn truth_effects() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new(PARTNER_ID, DataType::Utf8, false),
        Field::new(SCHEME_ID, DataType::Utf8, false),
        Field::new("effect_revenue", DataType::Float64, false),
        Field::new("effect_deal_registrations", DataType::Float64, false),
        Field::new("effect_certifications", DataType::Float64, false),
        Field::new("revenue_baseline", DataType::Float64, false),
    ]))
}

/// Schema of `truth/lift.parquet`.
pub fn truth_lift() -> Arc<Schema> {
    let float = |name: &str, nullable: bool| Field::new(name, DataType::Float64, nullable);
    Arc::new(Schema::new(vec![
        Field::new("period", DataType::Utf8, false),
        Field::new("archetype", DataType::Utf8, false),
        Field::new(SCHEME_ID, DataType::Utf8, false),
        Field::new("n_partners", DataType::UInt64, false),
        Field::new("n_assigned", DataType::UInt64, false),
        float("mean_revenue", false),
        float("sd_revenue", true),
        float("true_lift", false),
        float("true_cost", false),
        float("true_net", false),
        float("lift_sd", true),
        float("net_sd", true),
        float("realised_lift", true),
        float("realised_cost", true),
    ]))
}

/// The schemas that data/SCHEMA.md documents exactly, by their heading there.
pub fn documented() -> Vec<(&'static str, Arc<Schema>)> {
    vec![
        ("generated partners", generated_partners()),
        ("assignments", assignments()),
        ("generated outcomes", generated_outcomes()),
        ("truth archetypes", truth_archetypes()),
        ("truth effects", truth_effects()),
        ("truth lift", truth_lift()),
        ("segments", segments()),
        ("segment_profiles", segment_profiles(&[])),
        ("lift", lift()),
        ("power", power()),
        ("randomisation", randomisation()),
        ("weights", weights()),
        ("assignments_next", assignments_next()),
        ("migration", migration()),
    ]
}

/// Schema of `segments.parquet`.
pub fn segments() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new(PARTNER_ID, DataType::Utf8, false),
        Field::new(SEGMENT_ID, DataType::UInt32, false),
        Field::new("segment_name", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("distance", DataType::Float64, true),
        Field::new("second_segment_id", DataType::UInt32, true),
        Field::new("margin", DataType::Float64, true),
        Field::new("previous_segment_id", DataType::UInt32, true),
    ]))
}

/// The fixed columns of `segment_profiles.parquet`; `mean_<feature>` and
/// `median_<feature>` (Float64, nullable) follow for every numeric feature.
pub fn segment_profiles(features: &[String]) -> Arc<Schema> {
    let mut fields = vec![
        Field::new(SEGMENT_ID, DataType::UInt32, false),
        Field::new("segment_name", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("n_partners", DataType::UInt64, false),
        Field::new("share_partners", DataType::Float64, false),
        Field::new("share_revenue", DataType::Float64, true),
    ];
    for feature in features {
        fields.push(Field::new(
            format!("mean_{feature}"),
            DataType::Float64,
            true,
        ));
        fields.push(Field::new(
            format!("median_{feature}"),
            DataType::Float64,
            true,
        ));
    }
    Arc::new(Schema::new(fields))
}

/// Schema of `lift.parquet`.
pub fn lift() -> Arc<Schema> {
    let float = |name: &str| Field::new(name, DataType::Float64, true);
    Arc::new(Schema::new(vec![
        Field::new("outcome", DataType::Utf8, false),
        Field::new(SEGMENT_ID, DataType::UInt32, false),
        Field::new(SCHEME_ID, DataType::Utf8, false),
        Field::new("n_treated", DataType::UInt64, false),
        Field::new("n_holdout", DataType::UInt64, false),
        float("lift"),
        float("lift_rel"),
        float("se"),
        float("ci_low"),
        float("ci_high"),
        float("p_value"),
        float("q_value"),
        Field::new("significant", DataType::Boolean, true),
        float("mde"),
        float("incremental_outcome"),
        Field::new(COST, DataType::Float64, false),
        float("net"),
        float("roi"),
        Field::new("method", DataType::Utf8, false),
        Field::new("n_treated_missing_outcome", DataType::UInt64, false),
        Field::new("covariate", DataType::Utf8, false),
        float("se_unadjusted"),
        float("boot_ci_low"),
        float("boot_ci_high"),
    ]))
}

/// Schema of `power.parquet`: per outcome and segment, the holdout share
/// that detects the configured minimum effect.
pub fn power() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("outcome", DataType::Utf8, false),
        Field::new(SEGMENT_ID, DataType::UInt32, false),
        Field::new("n_partners", DataType::UInt64, false),
        Field::new("min_effect", DataType::Float64, false),
        Field::new("holdout_share", DataType::Float64, false),
        Field::new("mde_at_holdout_share", DataType::Float64, true),
        Field::new("recommended_holdout_share", DataType::Float64, true),
        Field::new("reachable", DataType::Boolean, false),
    ]))
}

/// Schema of `randomisation.parquet`: each stratum's arm counts against the
/// published shares (sample ratio mismatch).
pub fn randomisation() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new(SEGMENT_ID, DataType::UInt32, false),
        Field::new(SCHEME_ID, DataType::Utf8, false),
        Field::new("n_observed", DataType::UInt64, false),
        Field::new("expected_share", DataType::Float64, false),
        Field::new("n_expected", DataType::Float64, false),
        Field::new("chi_square", DataType::Float64, false),
        Field::new("df", DataType::UInt32, false),
        Field::new("p_value", DataType::Float64, false),
        Field::new("mismatch", DataType::Boolean, false),
    ]))
}

/// Schema of `weights.parquet` (and the rows of `weights.json`).
pub fn weights() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("target_period", DataType::Utf8, false),
        Field::new(SEGMENT_ID, DataType::UInt32, false),
        Field::new("segment_name", DataType::Utf8, false),
        Field::new(SCHEME_ID, DataType::Utf8, false),
        Field::new("weight", DataType::Float64, false),
        Field::new("previous_weight", DataType::Float64, true),
        Field::new("holdout_share", DataType::Float64, false),
        Field::new("reason", DataType::Utf8, false),
    ]))
}

/// Schema of `assignments_next.parquet`.
pub fn assignments_next() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new(PARTNER_ID, DataType::Utf8, false),
        Field::new(SEGMENT_ID, DataType::UInt32, false),
        Field::new(SCHEME_ID, DataType::Utf8, false),
        Field::new("holdout_streak", DataType::UInt32, false),
    ]))
}

/// Schema of `migration.parquet`: partners by previous and current segment.
pub fn migration() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("from_segment_id", DataType::UInt32, true),
        Field::new("to_segment_id", DataType::UInt32, false),
        Field::new("n_partners", DataType::UInt64, false),
    ]))
}
