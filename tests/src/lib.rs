//! Workspace-level integration tests of ovm live in `tests/tests/`.
