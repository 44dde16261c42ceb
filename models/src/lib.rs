//! segtune-models: the math of segtune, with no files, no Arrow and no CLI:
//! ndarray and slices in, plain structs out.
//!
//! - [`features`]: the fitted feature transform (log1p, median imputation,
//!   standardisation), saved with a run so that `assign` and the next period
//!   transform partners exactly as this run did.
//! - [`segmentation`]: k-means through linfa-clustering's API, with labels,
//!   distances and margins computed in a deterministic parallel pass.
//! - [`lift`]: difference in means with Welch errors, Benjamini-Hochberg
//!   q-values and the minimum detectable effect.
//! - [`tuning`]: each segment's scheme weights from the evidence.
//! - [`draw`]: the next period's seeded, stratified assignment draw.
//!
//! Missing values are NaN throughout: callers refuse NaN in their inputs
//! before it gets here, so NaN can only mean "missing".

#![deny(missing_docs)]

pub mod draw;
pub mod drift;
pub mod features;
pub mod lift;
pub mod segmentation;
pub mod tuning;
