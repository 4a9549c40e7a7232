//! C API of ovm (filled by the C API work).
