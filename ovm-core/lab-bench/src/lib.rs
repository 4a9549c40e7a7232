//! Empty: the comparison lives in `tests/compare.rs` (run it in a Xen dom0,
//! e.g. `tests/xenlab/lab cargo-test --manifest-path ovm-core/lab-bench/Cargo.toml --release -- --nocapture`).
