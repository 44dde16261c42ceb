//! Parameters of the segmentation: a consuming builder checked once.

use super::errors::SegmentationParamsError;

/// Default number of k-means restarts (k-means++ starts); the best inertia wins.
pub const DEFAULT_N_RUNS: usize = 3;
/// Default iteration cap per run.
pub const DEFAULT_MAX_N_ITERATIONS: u64 = 300;
/// Default tolerance on the centroids' movement.
pub const DEFAULT_TOLERANCE: f64 = 1e-4;

/// The number type of the rows Lloyd's iterations read. k-means++ starts,
/// centroids, sums, the stopping rule and the final assignment (segments,
/// distances, margins, inertia) are f64 either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "lowercase")
)]
pub enum Precision {
    /// f64 rows (the default).
    #[default]
    F64,
    /// An f32 copy of the rows: half the bytes per iteration and twice the
    /// lanes. Rounding (about 1e-7 relative) is far below the stopping
    /// tolerance; bench/RESULTS.md records the agreement with f64.
    F32,
}

/// Unchecked parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentationParams {
    n_clusters: usize,
    n_runs: usize,
    max_n_iterations: u64,
    tolerance: f64,
    seed: u64,
    precision: Precision,
}

/// Checked parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentationValidParams {
    pub(crate) n_clusters: usize,
    pub(crate) n_runs: usize,
    pub(crate) max_n_iterations: u64,
    pub(crate) tolerance: f64,
    pub(crate) seed: u64,
    pub(crate) precision: Precision,
}

impl SegmentationParams {
    /// `n_clusters` segments; defaults: 3 runs, 300 iterations, tolerance 1e-4, seed 0.
    pub fn new(n_clusters: usize) -> Self {
        Self {
            n_clusters,
            n_runs: DEFAULT_N_RUNS,
            max_n_iterations: DEFAULT_MAX_N_ITERATIONS,
            tolerance: DEFAULT_TOLERANCE,
            seed: 0,
            precision: Precision::F64,
        }
    }
    /// Number of k-means++ restarts (default 3).
    pub fn with_n_runs(mut self, n_runs: usize) -> Self {
        self.n_runs = n_runs;
        self
    }
    /// Iteration cap per run (default 300).
    pub fn with_max_n_iterations(mut self, max_n_iterations: u64) -> Self {
        self.max_n_iterations = max_n_iterations;
        self
    }
    /// Tolerance on centroid movement (default 1e-4).
    pub fn with_tolerance(mut self, tolerance: f64) -> Self {
        self.tolerance = tolerance;
        self
    }
    /// Seed of the k-means++ starts (default 0).
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// The rows' number type in the iterations (default f64).
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }
    /// Checks the parameters.
    pub fn check(self) -> Result<SegmentationValidParams, SegmentationParamsError> {
        if self.n_clusters == 0 {
            return Err(SegmentationParamsError::ZeroClusters);
        }
        if self.n_runs == 0 {
            return Err(SegmentationParamsError::ZeroRuns);
        }
        if self.max_n_iterations == 0 {
            return Err(SegmentationParamsError::ZeroIterations);
        }
        if !self.tolerance.is_finite() || self.tolerance < 0.0 {
            return Err(SegmentationParamsError::Tolerance(self.tolerance));
        }
        Ok(SegmentationValidParams {
            n_clusters: self.n_clusters,
            n_runs: self.n_runs,
            max_n_iterations: self.max_n_iterations,
            tolerance: self.tolerance,
            seed: self.seed,
            precision: self.precision,
        })
    }
}

impl SegmentationValidParams {
    /// Number of segments.
    pub fn n_clusters(&self) -> usize {
        self.n_clusters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn n_clusters_cannot_be_zero() {
        assert_eq!(
            SegmentationParams::new(0).check(),
            Err(SegmentationParamsError::ZeroClusters)
        );
    }

    #[test]
    fn runs_iterations_and_tolerance_are_checked() {
        assert_eq!(
            SegmentationParams::new(3).with_n_runs(0).check(),
            Err(SegmentationParamsError::ZeroRuns)
        );
        assert_eq!(
            SegmentationParams::new(3).with_max_n_iterations(0).check(),
            Err(SegmentationParamsError::ZeroIterations)
        );
        assert!(SegmentationParams::new(3)
            .with_tolerance(f64::NAN)
            .check()
            .is_err());
        assert!(SegmentationParams::new(3).check().is_ok());
    }
}
