//! ovm: an embeddable manager for Xen virtualization environments.
#![warn(missing_docs)]

pub mod driver;
pub mod error;
pub mod model;

pub use error::{Error, ErrorKind, Result};
