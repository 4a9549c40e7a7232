# ovm — common tasks. `make demo` runs the walk-through; `make test` runs every check CI runs.

CARGO ?= cargo

.PHONY: demo demo-xen demo-xen-cli test deps fmt lint unit bench lab-test agent-lab-test dc-lab-test migration-lab-test lab-bench fuzz header header-check c-install c-examples c-test py-test py-bench parity-test

demo:
	$(CARGO) run -q -p ovm-core --example walkthrough -- $(DB)

# The walk-through on real Xen: a lab server boots with ovm-agent in dom0, and the lab's storage
# server; the manager runs here, the repository is on the storage server's NFS export.
demo-xen:
	$(CARGO) build -q -p ovm-core --features xen,agent-server --bin ovm-agent --example walkthrough
	tests/xenlab/lab serve --storage --dom0 tests/xenlab/agent-dom0.sh --dom0-file target/debug/ovm-agent -- \
		sh -c '$(CARGO) run -q -p ovm-core --example walkthrough -- $(DB) --xen "127.0.0.1:$$OVM_XENLAB_PORT_1" ovm-lab-agent --nfs "$$OVM_XENLAB_STORAGE_LAN_IP"'

# The same on real Xen with the `ovm` command: a manager service, driven over its socket.
demo-xen-cli:
	$(CARGO) build -q -p ovm-core --features xen,agent-server --bin ovm-agent --bin ovm
	tests/xenlab/lab serve --storage --dom0 tests/xenlab/agent-dom0.sh --dom0-file target/debug/ovm-agent -- \
		sh -c 'scripts/demo-cli "127.0.0.1:$$OVM_XENLAB_PORT_1" ovm-lab-agent "$$OVM_XENLAB_STORAGE_LAN_IP"'

fmt:
	$(CARGO) fmt --all -- --check

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit:
	$(CARGO) test --workspace

deps:
	scripts/install-deps

test: deps
	$(MAKE) fmt lint unit fuzz c-test py-test lab-test

# Python API: a fresh venv, the wheel built by maturin and installed with pip, then pytest (with
# the `ovm` binary, for the tests through a manager service), stubtest,
# mypy --strict on the examples, and the examples themselves.
PYTHON ?= python3
PY_VENV ?= target/py-venv
VPY = $(PY_VENV)/bin/python

# The `ovm` binary the service tests start (tests/test_remote.py runs `ovm serve`).
OVM_BIN ?= $(if $(CARGO_TARGET_DIR),$(CARGO_TARGET_DIR),$(CURDIR)/target)/debug/ovm

py-test:
	$(CARGO) build -q -p ovm-core --bin ovm
	rm -rf $(PY_VENV)
	$(PYTHON) -m venv $(PY_VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q "maturin>=1.9.4,<2" pytest hypothesis mypy
	PATH="$(CURDIR)/$(PY_VENV)/bin:$$PATH" $(VPY) -m pip install -q --no-build-isolation ./ovm-py
	cd ovm-py && OVM_BIN=$(OVM_BIN) ../$(VPY) -m pytest -q
	cd ovm-py && ../$(VPY) -m mypy.stubtest ovm._ovm --allowlist stubtest-allowlist.txt
	cd bindings-examples/python && ../../$(VPY) -m mypy --strict .
	cd bindings-examples/python && for f in inventory bulk_clone_start event_watcher async_start import_assembly vlan_over_bond policy_day; do \
		../../$(VPY) -W error $$f.py > /dev/null || exit 1; done
	$(MAKE) parity-test

# Parity: one scenario (ovm-core/examples/parity.rs, bindings-examples/c/parity.c,
# bindings-examples/python/parity.py) through Rust, C and Python; the answers must agree once ids
# are replaced by names. Needs the venv of py-test.
PARITY = target/parity
parity-test:
	$(MAKE) c-install PREFIX=$(C_PREFIX)
	PKG_CONFIG_PATH=$(C_PREFIX)/lib/pkgconfig $(MAKE) -C bindings-examples/c build/parity
	mkdir -p $(PARITY)
	$(CARGO) run -q -p ovm-core --example parity > $(PARITY)/rust.json
	LD_LIBRARY_PATH=$(C_PREFIX)/lib bindings-examples/c/build/parity > $(PARITY)/c.json
	$(VPY) -W error bindings-examples/python/parity.py > $(PARITY)/python.json
	$(VPY) bindings-examples/parity_compare.py $(PARITY)/rust.json $(PARITY)/c.json $(PARITY)/python.json

py-bench:
	$(VPY) ovm-py/bench/bench.py

bench:
	$(CARGO) bench -p ovm-core --bench manager
	$(CARGO) bench -p ovm-core --bench remote

# --- C API -------------------------------------------------------------------------------------
CBINDGEN ?= cbindgen
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
PREFIX ?= /usr/local
C_PREFIX := $(CURDIR)/target/c-prefix

header:
	$(CBINDGEN) --config ovm-ffi/cbindgen.toml --crate ovm-ffi --output include/ovm.h ovm-ffi

header-check:
	$(CBINDGEN) --config ovm-ffi/cbindgen.toml --crate ovm-ffi --output target/ovm.h.check ovm-ffi
	diff -u include/ovm.h target/ovm.h.check || (echo "include/ovm.h is out of date: run make header" && false)

# Install libovm.so (versioned SONAME), libovm.a, ovm.h and ovm.pc under PREFIX. The build is the
# same as the data-centre lab's (ovm-core with its default features, which ovm-agent and ovm-lio
# need): `make test` compiles the release library once.
c-install:
	$(CARGO) build --release -p ovm-ffi -p ovm-core --lib --bin ovm-agent --bin ovm-lio --bin ovm
	@set -e; minor=$$(echo $(VERSION) | cut -d. -f2); major=$$(echo $(VERSION) | cut -d. -f1); \
	  if [ "$$major" = 0 ]; then soname=libovm.so.0.$$minor; else soname=libovm.so.$$major; fi; \
	  install -d $(PREFIX)/lib/pkgconfig $(PREFIX)/include; \
	  install -m 644 include/ovm.h $(PREFIX)/include/ovm.h; \
	  install -m 755 target/release/libovm.so $(PREFIX)/lib/libovm.so.$(VERSION); \
	  ln -sf libovm.so.$(VERSION) $(PREFIX)/lib/$$soname; \
	  ln -sf $$soname $(PREFIX)/lib/libovm.so; \
	  install -m 644 target/release/libovm.a $(PREFIX)/lib/libovm.a; \
	  sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' ovm-ffi/ovm.pc.in > $(PREFIX)/lib/pkgconfig/ovm.pc
	@echo "installed ovm $(VERSION) under $(PREFIX)"

c-examples:
	rm -rf $(C_PREFIX)
	$(MAKE) c-install PREFIX=$(C_PREFIX)
	PKG_CONFIG_PATH=$(C_PREFIX)/lib/pkgconfig $(MAKE) -C bindings-examples/c clean
	PKG_CONFIG_PATH=$(C_PREFIX)/lib/pkgconfig LD_LIBRARY_PATH=$(C_PREFIX)/lib $(MAKE) -C bindings-examples/c SANITIZE=1 run
	PKG_CONFIG_PATH=$(C_PREFIX)/lib/pkgconfig LD_LIBRARY_PATH=$(C_PREFIX)/lib $(MAKE) -C bindings-examples/c remote OVM=$(CURDIR)/target/release/ovm
	PKG_CONFIG_PATH=$(C_PREFIX)/lib/pkgconfig LD_LIBRARY_PATH=$(C_PREFIX)/lib $(MAKE) -C bindings-examples/c valgrind

c-test: header-check c-examples

# --- Real Xen (the QEMU lab) ---------------------------------------------------------------------
# Builds the lab from Debian's repositories, boots a Xen server, runs its self-test, then runs the
# real-Xen test binaries inside dom0 in one boot. Fails loudly if the lab cannot be built.
lab-test:
	tests/xenlab/lab selftest
	tests/xenlab/lab cargo-test --manifest-path tests/xenlab/probe/Cargo.toml
	tests/xenlab/lab cargo-test -p ovm-core --features xen-lab-tests --test xen_lab
	$(MAKE) agent-lab-test
	$(MAKE) dc-lab-test
	$(MAKE) migration-lab-test

# The data-centre and migration labs with the peers of their figures measured in the same run:
# a full copy against the thin clone, `wget | tar -x` against the import of a 256 MiB archive,
# plain `xl migrate` against ovm's live migration, and the evacuation one migration at a time
# against the parallel one (about ten minutes more than `make lab-test` spends on them).
lab-bench:
	OVM_LAB_FIGURES=1 $(MAKE) dc-lab-test migration-lab-test

# The lab as a data centre, one boot: three servers and the storage server on the lab switch, the
# test as the manager on the management LAN (a network namespace on the host) reaching them; NFS
# on every server over bonds, a shared iSCSI LUN, a bond failover, a VLAN, guests on two servers
# talking, a cut link, a partition, a hung server, server 1 killed while the rest carry on, and
# server 1 booted again by a Wake-on-LAN magic packet. In the same boot, first, with an ovm agent in
# every dom0: shared NFS storage discovered, presented to two servers and a VM run from it
# (ovm-core/tests/storage_lab.rs); then template and OVA imports, clones, hostile archives, thin
# clones and a manager rebuilt from its repositories (ovm-core/tests/repository_lab.rs); then bonds,
# VLANs and bridges built by ovm, guests on them through a bond failover, a forced management cut
# rolled back by the agent (ovm-core/tests/network_lab.rs); the VM lifecycle on real Xen: reboots and
# crashes with each restart action followed, a graceful stop, suspend and resume on another server
# (ovm-core/tests/lifecycle_lab.rs); last, as it kills a server, a clustered pool: OCFS2 on an iSCSI
# LUN and O2CB on all three servers, the elected master holding the virtual IP, the master killed
# and the address taken by a survivor (ovm-core/tests/cluster_lab.rs). The servers' programs are
# release builds, as they would be deployed (the figures measure them). The five tests and the
# self-test take about 20 minutes in one boot, so the boot's hard limit is 30 minutes rather than 15.
dc-lab-test:
	$(CARGO) build --release -p ovm-ffi -p ovm-core --lib --bin ovm-agent --bin ovm-lio --bin ovm
	$(CARGO) test -p ovm-core --features agent-lab-tests --test storage_lab --no-run --message-format=json \
		| grep -o '"executable":"[^"]*storage_lab[^"]*"' | cut -d'"' -f4 > target/storage-lab-test
	$(CARGO) test -p ovm-core --features agent-lab-tests --test repository_lab --no-run --message-format=json \
		| grep -o '"executable":"[^"]*repository_lab[^"]*"' | cut -d'"' -f4 > target/repository-lab-test
	$(CARGO) test -p ovm-core --features agent-lab-tests --test network_lab --no-run --message-format=json \
		| grep -o '"executable":"[^"]*network_lab[^"]*"' | cut -d'"' -f4 > target/network-lab-test
	$(CARGO) test -p ovm-core --features agent-lab-tests --test lifecycle_lab --no-run --message-format=json \
		| grep -o '"executable":"[^"]*lifecycle_lab[^"]*"' | cut -d'"' -f4 > target/lifecycle-lab-test
	$(CARGO) test -p ovm-core --features agent-lab-tests --test cluster_lab --no-run --message-format=json \
		| grep -o '"executable":"[^"]*cluster_lab[^"]*"' | cut -d'"' -f4 > target/cluster-lab-test
	test -x "$$(cat target/storage-lab-test)" && test -x "$$(cat target/repository-lab-test)" && test -x "$$(cat target/network-lab-test)" \
		&& test -x "$$(cat target/lifecycle-lab-test)" && test -x "$$(cat target/cluster-lab-test)"
	OVM_XENLAB_TIMEOUT=1800 tests/xenlab/lab serve -n 3 --storage --storage-file target/release/ovm-lio --manager \
		--dom0 tests/xenlab/agent-dom0.sh --dom0-file target/release/ovm-agent --dom0-file tests/xenlab/dom0-runner.sh \
		--dom0-file bindings-examples/storage-plugins/ovm-example-nfs-shares -- \
		sh -c '"$$0" --nocapture --test-threads=1 && "$$1" --nocapture && "$$2" --nocapture && "$$3" --nocapture && tests/xenlab/dc-selftest.sh && "$$4" --nocapture' \
		"$$(cat target/storage-lab-test)" "$$(cat target/repository-lab-test)" "$$(cat target/network-lab-test)" \
		"$$(cat target/lifecycle-lab-test)" "$$(cat target/cluster-lab-test)"

# The agent end to end: ovm-agent in a lab server's dom0, the manager on the host (agent_lab.rs).
# Live migration between two lab servers through their agents, on the Xen build that live-migrates
# PV guests (the default build has no shadow paging: see tests/xenlab/README.md).
MIGRATION_XEN ?= 4.17.5+72-g01140da4e8-1
migration-lab-test:
	$(CARGO) build -p ovm-core --features xen,agent-server --bin ovm-agent
	$(CARGO) test -p ovm-core --features agent-lab-tests --test migration_lab --no-run
	OVM_XENLAB_TIMEOUT=2400 OVM_XENLAB_XEN_VERSION=$(MIGRATION_XEN) tests/xenlab/lab serve -n 2 --dom0 tests/xenlab/agent-dom0.sh \
		--dom0-file target/debug/ovm-agent --dom0-file tests/xenlab/dom0-runner.sh \
		--dom0-file tests/xenlab/migrate-peer.sh -- \
		$(CARGO) test -p ovm-core --features agent-lab-tests --test migration_lab -- --nocapture

# Under Debian 12's QEMU 7.2 (downloaded and extracted by the lab, never installed), which runs the
# nested HVM guests it boots from the lab's installation CD (QEMU 9.1 to 10.0's TCG cannot: see
# tests/xenlab/README.md).
agent-lab-test:
	$(CARGO) build -p ovm-core --features xen,agent-server --bin ovm-agent
	$(CARGO) test -p ovm-core --features agent-lab-tests --test agent_lab --no-run
	OVM_XENLAB_QEMU_DEB=7.2 tests/xenlab/lab serve --dom0 tests/xenlab/agent-dom0.sh --dom0-file target/debug/ovm-agent -- \
		$(CARGO) test -p ovm-core --features agent-lab-tests --test agent_lab -- --nocapture

# Short runs of the fuzz targets (cargo-fuzz on the stable toolchain): the xenstore wire decoder
# and the protocol decoders (the agent's and the manager service's), the tar reader, the OVF descriptor and manifest parsers, and the
# vm.cfg parser. Unoptimized builds (--dev) with AddressSanitizer: they build in a third of the time
# of optimized ones and still run thousands of inputs a second, enough for these short runs; for
# long fuzzing sessions, run cargo fuzz without --dev.
fuzz:
	cd ovm-core && RUSTC_BOOTSTRAP=1 cargo fuzz run --dev xs_decode -- -max_total_time=20
	cd ovm-core && RUSTC_BOOTSTRAP=1 cargo fuzz run --dev agent_decode -- -max_total_time=20
	cd ovm-core && RUSTC_BOOTSTRAP=1 cargo fuzz run --dev tar_entries -- -max_total_time=15
	cd ovm-core && RUSTC_BOOTSTRAP=1 cargo fuzz run --dev ovf_parse -- -max_total_time=15
	cd ovm-core && RUSTC_BOOTSTRAP=1 cargo fuzz run --dev vmcfg_parse -- -max_total_time=15
	$(if $(CI),rm -rf ovm-core/fuzz/target)  # CI: the sanitizer build is not needed again
