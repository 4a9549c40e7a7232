# ovm — common tasks. `make demo` runs the walk-through; `make test` runs every check CI runs.

CARGO ?= cargo

.PHONY: demo test fmt lint unit bench py-test py-bench

demo:
	$(CARGO) run -q -p ovm-core --example walkthrough -- $(DB)

fmt:
	$(CARGO) fmt --all -- --check

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit:
	$(CARGO) test --workspace

test: fmt lint unit py-test

# Python API: a fresh venv, the wheel built by maturin and installed with pip, then pytest, stubtest,
# mypy --strict on the examples, and the examples themselves.
PYTHON ?= python3
PY_VENV ?= target/py-venv
VPY = $(PY_VENV)/bin/python

py-test:
	rm -rf $(PY_VENV)
	$(PYTHON) -m venv $(PY_VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q "maturin>=1.9.4,<2" pytest hypothesis mypy
	PATH="$(CURDIR)/$(PY_VENV)/bin:$$PATH" $(VPY) -m pip install -q --no-build-isolation ./ovm-py
	cd ovm-py && ../$(VPY) -m pytest -q
	cd ovm-py && ../$(VPY) -m mypy.stubtest ovm._ovm --allowlist stubtest-allowlist.txt
	cd bindings-examples/python && ../../$(VPY) -m mypy --strict .
	cd bindings-examples/python && for f in inventory bulk_clone_start event_watcher async_start; do \
		../../$(VPY) -W error $$f.py > /dev/null || exit 1; done

py-bench:
	$(VPY) ovm-py/bench/bench.py

bench:
	$(CARGO) bench -p ovm-core --bench manager
