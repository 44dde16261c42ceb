//! Periods: the labels a run evaluates and targets.
//!
//! A **period** is a label such as `2026-Q3` (a quarter) or `2026-07` (a
//! month). The next period is derived for those two forms; any other label is
//! kept as an opaque string whose successor must be given by the user
//! (config key `target-period`). Parsing is strict so that `2026-q3` or
//! `2026-Q5` is refused early instead of silently becoming an opaque label.

use std::fmt;

/// A period label, parsed once.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Period {
    /// A calendar quarter, `YYYY-Qn` with n in 1..=4.
    Quarter {
        /// The year.
        year: i32,
        /// The quarter, 1..=4.
        quarter: u8,
    },
    /// A calendar month, `YYYY-MM` with MM in 01..=12.
    Month {
        /// The year.
        year: i32,
        /// The month, 1..=12.
        month: u8,
    },
    /// Any other label: allowed, but it has no derivable successor.
    Other(String),
}

/// A label that looks like a quarter or a month but is not a valid one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{label}` is not a valid period: {reason}")]
pub struct PeriodError {
    /// The label as given.
    pub label: String,
    /// Why it was refused.
    pub reason: &'static str,
}

impl Period {
    /// Parses a label. `YYYY-Qn` and `YYYY-MM` are recognised; labels that
    /// start like them but are out of range are refused; anything else that is
    /// non-empty, printable and free of path separators is an opaque label.
    pub fn parse(label: &str) -> Result<Self, PeriodError> {
        let refuse = |reason| PeriodError {
            label: label.to_string(),
            reason,
        };
        if label.is_empty() {
            return Err(refuse("it is empty"));
        }
        if label
            .chars()
            .any(|c| c.is_control() || c == '/' || c == '\\')
            || label == "."
            || label == ".."
        {
            return Err(refuse("it may not contain `/`, `\\` or control characters"));
        }
        let bytes = label.as_bytes();
        let year_prefix =
            bytes.len() >= 5 && bytes[..4].iter().all(u8::is_ascii_digit) && bytes[4] == b'-';
        if year_prefix {
            let year: i32 = label[..4].parse().map_err(|_| refuse("bad year"))?;
            let rest = &label[5..];
            if let Some(q) = rest.strip_prefix('Q').or_else(|| rest.strip_prefix('q')) {
                if rest.starts_with('q') {
                    return Err(refuse("write the quarter with a capital Q, as in 2026-Q3"));
                }
                return match q.parse::<u8>() {
                    Ok(quarter @ 1..=4) if q.len() == 1 => Ok(Period::Quarter { year, quarter }),
                    _ => Err(refuse("the quarter must be Q1 to Q4")),
                };
            }
            if rest.len() == 2 && rest.bytes().all(|b| b.is_ascii_digit()) {
                return match rest.parse::<u8>() {
                    Ok(month @ 1..=12) => Ok(Period::Month { year, month }),
                    _ => Err(refuse("the month must be 01 to 12")),
                };
            }
        }
        Ok(Period::Other(label.to_string()))
    }

    /// The following period, when it can be derived.
    pub fn next(&self) -> Option<Period> {
        self.offset(1)
    }

    /// The period `steps` after this one (negative: before), when derivable.
    pub fn offset(&self, steps: i64) -> Option<Period> {
        match *self {
            Period::Quarter { year, quarter } => {
                let index = i64::from(year) * 4 + i64::from(quarter - 1) + steps;
                Some(Period::Quarter {
                    year: i32::try_from(index.div_euclid(4)).ok()?,
                    quarter: u8::try_from(index.rem_euclid(4) + 1).ok()?,
                })
            }
            Period::Month { year, month } => {
                let index = i64::from(year) * 12 + i64::from(month - 1) + steps;
                Some(Period::Month {
                    year: i32::try_from(index.div_euclid(12)).ok()?,
                    month: u8::try_from(index.rem_euclid(12) + 1).ok()?,
                })
            }
            Period::Other(_) => None,
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Period::Quarter { year, quarter } => write!(f, "{year:04}-Q{quarter}"),
            Period::Month { year, month } => write!(f, "{year:04}-{month:02}"),
            Period::Other(label) => f.write_str(label),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarter_rolls_over_the_year() {
        let period = Period::parse("2026-Q4").expect("valid");
        assert_eq!(period.next().expect("derivable").to_string(), "2027-Q1");
        assert_eq!(period.offset(-4).expect("derivable").to_string(), "2025-Q4");
    }

    #[test]
    fn month_rolls_over_the_year() {
        let period = Period::parse("2026-12").expect("valid");
        assert_eq!(period.next().expect("derivable").to_string(), "2027-01");
        assert_eq!(
            Period::parse("2026-01")
                .expect("valid")
                .offset(-1)
                .expect("derivable")
                .to_string(),
            "2025-12"
        );
    }

    #[test]
    fn malformed_quarters_and_months_are_refused() {
        for label in [
            "2026-Q5", "2026-Q0", "2026-q3", "2026-13", "2026-00", "", "a/b", "..",
        ] {
            assert!(Period::parse(label).is_err(), "{label} should be refused");
        }
    }

    #[test]
    fn opaque_labels_have_no_successor() {
        let period = Period::parse("FY26-H1").expect("valid");
        assert_eq!(period, Period::Other("FY26-H1".into()));
        assert!(period.next().is_none());
    }
}
