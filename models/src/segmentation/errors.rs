//! Errors of the segmentation: bad parameters apart from failures while fitting.

/// A parameter out of range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SegmentationParamsError {
    /// k must be at least 1.
    #[error("n_clusters must be at least 1")]
    ZeroClusters,
    /// At least one run.
    #[error("n_runs must be at least 1")]
    ZeroRuns,
    /// At least one iteration.
    #[error("max_n_iterations must be at least 1")]
    ZeroIterations,
    /// Tolerance must be finite and non-negative.
    #[error("tolerance must be finite and >= 0, got {0}")]
    Tolerance(f64),
}

/// A failure while fitting.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SegmentationError {
    /// Invalid parameters.
    #[error(transparent)]
    Params(#[from] SegmentationParamsError),
    /// Fewer rows than clusters.
    #[error("{rows} partners cannot form {n_clusters} segments")]
    TooFewRows {
        /// Rows given.
        rows: usize,
        /// Clusters asked for.
        n_clusters: usize,
    },
    /// A non-finite value in the matrix.
    #[error("the feature matrix has a non-finite value at row {row}, column {column}")]
    NonFinite {
        /// Row.
        row: usize,
        /// Column.
        column: usize,
    },
    /// k-means failed.
    #[error("k-means failed: {0}")]
    KMeans(String),
    /// An error of linfa's interface.
    #[error("linfa: {0}")]
    Linfa(String),
}

impl From<linfa::Error> for SegmentationError {
    fn from(error: linfa::Error) -> Self {
        SegmentationError::Linfa(error.to_string())
    }
}
