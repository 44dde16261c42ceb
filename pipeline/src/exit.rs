//! Exit codes, decided once, at the edge.
//!
//! Library code returns typed errors; `main` walks the error chain and maps
//! the first error it recognises to a code of the contract. Anything it does
//! not recognise is an internal error (1): a bug, or the machine failing.

use std::process::ExitCode;

use crate::config::ConfigError;
use crate::ingest::IngestError;

/// The contract's exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: success.
    Success = 0,
    /// 1: internal error.
    Internal = 1,
    /// 2: usage or configuration error (wins over 3 when both are found).
    Usage = 2,
    /// 3: invalid or missing input data.
    InputData = 3,
    /// 4: no k in the sweep passes the quality gates.
    NoViableK = 4,
}

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> Self {
        ExitCode::from(status as u8)
    }
}

/// A usage error raised by a command (an existing output without --force, ...).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Classifies an error by the first recognised error in its chain.
pub fn classify(error: &anyhow::Error) -> ExitStatus {
    for cause in error.chain() {
        if cause.is::<ConfigError>() || cause.is::<UsageError>() {
            return ExitStatus::Usage;
        }
        if cause.is::<IngestError>() {
            return ExitStatus::InputData;
        }
        if cause.is::<crate::segment::NoViableK>() {
            return ExitStatus::NoViableK;
        }
        if let Some(data) = cause.downcast_ref::<segtune_data::DataError>() {
            if matches!(data, segtune_data::DataError::InvalidParams(_)) {
                return ExitStatus::Usage;
            }
        }
    }
    ExitStatus::Internal
}
