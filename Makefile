# ovm — common tasks. `make demo` runs the walk-through; `make test` runs every check CI runs.

CARGO ?= cargo

.PHONY: demo test fmt lint unit bench

demo:
	$(CARGO) run -q -p ovm-core --example walkthrough -- $(DB)

fmt:
	$(CARGO) fmt --all -- --check

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit:
	$(CARGO) test --workspace

test: fmt lint unit

bench:
	$(CARGO) bench -p ovm-core --bench manager
