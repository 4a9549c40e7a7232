//! Parsers for what is imported into a repository: tar archives (OVA packages), OVF descriptors
//! and their manifests, and Xen `vm.cfg` files, including the configuration files ovm keeps
//! in its repositories.
//!
//! Everything here parses untrusted input. Each parser bounds the memory it uses, never recurses
//! on the depth of its input, never panics, and refuses bad input with
//! [`Error::InvalidArgument`](crate::Error::InvalidArgument) naming what is wrong. Nothing here
//! performs I/O beyond reading the [`std::io::Read`] a caller hands in.

pub mod manifest;
pub mod ovf;
pub mod tar;
pub mod vmcfg;
