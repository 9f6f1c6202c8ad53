pub(crate) mod codegen;
pub(crate) mod fuser;
pub(crate) mod launch;
pub(crate) mod scoring;
pub(crate) mod settings;

pub mod trace;
