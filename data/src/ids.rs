//! Identifiers, checked once when built.
//!
//! A **partner** is a reseller, MSP, distributor or installer in the program,
//! keyed by `partner_id`. A **scheme** is one incentive (`scheme_id`), and the
//! reserved scheme id `holdout` marks the control group. A **segment** is a
//! group of partners treated alike, keyed by a `segment_id` that keeps its
//! meaning from one run to the next.

use std::fmt;

/// The scheme id that marks a partner held out (no scheme this period).
pub const HOLDOUT: &str = "holdout";

/// Longest id accepted for partners and schemes, in bytes.
pub const MAX_ID_LEN: usize = 256;

/// An id that is empty, too long or has control characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} `{shown}` is not valid: {reason}")]
pub struct IdError {
    /// Which kind of id.
    pub kind: &'static str,
    /// The id, shortened and escaped for display.
    pub shown: String,
    /// Why it was refused.
    pub reason: &'static str,
}

fn check(kind: &'static str, value: &str) -> Result<(), IdError> {
    let refuse = |reason| IdError {
        kind,
        shown: value
            .chars()
            .take(40)
            .collect::<String>()
            .escape_debug()
            .to_string(),
        reason,
    };
    if value.is_empty() {
        return Err(refuse("it is empty"));
    }
    if value.len() > MAX_ID_LEN {
        return Err(refuse("it is longer than 256 bytes"));
    }
    if value.chars().any(char::is_control) {
        return Err(refuse("it contains control characters"));
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Checks and wraps an id.
            pub fn try_new(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                check($kind, &value)?;
                Ok(Self(value))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, IdError> {
                Self::try_new(value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_id!(
    /// A partner's id: non-empty, at most 256 bytes, no control characters.
    PartnerId,
    "partner_id"
);
string_id!(
    /// A scheme's id; `holdout` is reserved for the control group.
    SchemeId,
    "scheme_id"
);

impl SchemeId {
    /// Whether this id marks the holdout (control) group.
    pub fn is_holdout(&self) -> bool {
        self.0 == HOLDOUT
    }
}

/// A segment's id: stable across runs, never reused once retired.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct SegmentId(pub u32);

impl fmt::Display for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partner_id_cannot_be_empty_or_hold_control_characters() {
        assert!(PartnerId::try_new("").is_err());
        assert!(PartnerId::try_new("P1\n").is_err());
        assert!(PartnerId::try_new("x".repeat(257)).is_err());
        assert_eq!(
            PartnerId::try_new("P0000001").expect("valid").as_str(),
            "P0000001"
        );
    }

    #[test]
    fn holdout_is_recognised() {
        assert!(SchemeId::try_new(HOLDOUT).expect("valid").is_holdout());
        assert!(!SchemeId::try_new("cert_bonus").expect("valid").is_holdout());
    }
}
