//! Segmentation: k-means over the scaled feature matrix.
//!
//! A **segment** here is one k-means cluster; rule segments are decided
//! before this point and never reach it. The model interface is
//! linfa-clustering's (`KMeans::params_with_rng(..).fit(..)`); what segtune
//! reports per partner (its segment, distance, the second-nearest segment and
//! the margin) is computed afterwards in one deterministic parallel pass, and
//! clusters are numbered in a canonical order (largest first) so that the same
//! data and seed always give the same labels.

mod algorithm;
mod errors;
mod hyperparams;
pub mod lloyd;
pub mod selection;

pub use algorithm::{assign_to_centroids, label_means, Assignment, Labelled, Segmentation};
pub use errors::{SegmentationError, SegmentationParamsError};
pub use hyperparams::{
    Precision, SegmentationParams, SegmentationValidParams, DEFAULT_MAX_N_ITERATIONS,
    DEFAULT_N_RUNS, DEFAULT_TOLERANCE,
};
