//! Python API of ovm (filled by the Python API work).
