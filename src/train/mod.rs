//! Training: examples become batches (`data`), the learning rate follows `schedule`.
//! The loop, checkpoints and run directories build on these.

pub mod adamw;
pub mod data;
pub mod fit;
pub mod schedule;
pub mod world;
