//! Runs: one directory per resolved experiment, holding its config, metadata,
//! log, metrics, checkpoints and evaluation.

pub mod checkpoint;
