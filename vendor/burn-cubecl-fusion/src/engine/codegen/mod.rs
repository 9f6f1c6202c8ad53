pub(crate) mod io;
pub(crate) mod ir;
pub(crate) mod kernel;
pub(crate) mod tensor;
pub(crate) mod view;

mod base;
pub(crate) use base::*;
