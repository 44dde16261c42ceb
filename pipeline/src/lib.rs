//! segtune: segments channel partners, measures the lift of each incentive
//! scheme per segment against holdouts, and tunes each segment's incentive mix
//! for the next period.
//!
//! This crate holds the stages and the `segtune` binary. Stages never call
//! each other: the binary chains them through their hand-off types. So far:
//! [`config`] (the run file, resolved once), [`ingest`] (reading and refusing
//! bad input), [`output`] (folders that appear complete or not at all) and
//! [`exit`] (the contract's exit codes).

#![deny(missing_docs)]

pub mod assign;
pub mod config;
pub mod continuity;
pub mod draw;
pub mod evaluate;
pub mod exit;
pub mod fault;
pub mod features;
pub mod fuzz;
pub mod ids;
pub mod ingest;
pub mod manifest;
pub mod output;
pub mod outputs;
pub mod overrides;
pub mod power;
pub mod previous;
pub mod progress;
pub mod publish;
pub mod report;
pub mod rules;
pub mod run;
pub mod segment;
pub mod simulate;
pub mod summary;
pub mod tune;
