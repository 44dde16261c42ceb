//! Integration tests of the `segtune` binary: each drives the real command
//! line on files written for the test and checks exit codes, messages and
//! what was (not) written.

mod assign_cli;
mod bounded_ingest;
mod choose_k;
mod common;
mod config_cli;
mod continuity;
mod crash_safety;
mod features_cli;
mod fuzz_replay;
mod generate_cli;
mod ingest_refusals;
mod lift_checks;
mod odd_programs;
mod peer_kmeans;
mod publish_cli;
mod report_browser;
mod rules_cli;
mod run_e2e;
mod simulate_cli;
mod tune_cli;
mod unusual_inputs;
