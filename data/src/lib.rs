//! segtune-data: the tables segtune reads and writes, its ids and periods,
//! and the seeded synthetic generator with its ground truth.
//!
//! The generator is the yardstick of the whole project: every later
//! capability (segments, lift, tuning) is checked against the truth it writes
//! to its own `truth/` folder, never as an input column. It is therefore
//! deliberately not easy (overlapping archetypes, heavy-tailed revenue,
//! small and close effects), and its defaults are frozen (data/README.md).

#![deny(missing_docs)]

pub mod generator;
pub mod ids;
pub mod parquet_io;
pub mod period;
pub mod rng;
pub mod schema;

use std::path::PathBuf;

pub use ids::{PartnerId, SchemeId, SegmentId, HOLDOUT};
pub use period::{Period, PeriodError};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file or folder could not be read or written.
    #[error("failed to access `{path}`")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Parquet encoding or decoding failed.
    #[error("failed to write Parquet `{path}`")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// An Arrow batch could not be built.
    #[error("failed to build an Arrow batch")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// Parameters out of range.
    #[error("invalid generator parameter: {0}")]
    InvalidParams(String),
    /// JSON could not be written.
    #[error("failed to write JSON `{path}`")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

/// Results of this crate.
pub type Result<T, E = DataError> = std::result::Result<T, E>;
