//! wmx: declarative experiments for WASM WorldModels — language models that write a
//! WebAssembly program when a question needs computation, run it in a sandbox, and
//! answer from the computed value. The binary in `main.rs` is a thin shell over this.

pub mod backend;
pub mod bench;
pub mod compare;
pub mod config;
pub mod curriculum;
pub mod eval;
pub mod fs;
pub mod infer;
pub mod model;
pub mod ops;
pub mod profile;
pub mod prompt;
pub mod report;
pub mod run;
pub mod rundir;
pub mod sandbox;
pub mod tables;
pub mod tokenize;
pub mod train;

