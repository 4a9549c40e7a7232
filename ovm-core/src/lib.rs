//! ovm: an embeddable manager for Xen virtualization environments.
#![warn(missing_docs)]
pub mod xen;
