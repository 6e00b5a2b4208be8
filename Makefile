# Pixie in Rust. `make run` and `make test` are the two commands; everything they need is installed here.
SHELL := /bin/bash
.DEFAULT_GOAL := help

CACHE ?= $(HOME)/.cache/pixie-rs
export CARGO_TARGET_DIR ?= $(CACHE)/target
export CARGO_TERM_COLOR ?= never
CLUSTER := tests/cluster/cluster.sh
DEV_CLUSTER_DIR := $(CACHE)/dev-cluster
VIZIER := $(CARGO_TARGET_DIR)/debug/vizier

# Debian packages the build and the tests use (clang-19 and libbpf for the eBPF programs, protoc for
# gRPC code generation, wrk for benchmarks, python3 for test peers, nats-server for the PEM heartbeats).
APT_PACKAGES := clang-19 llvm-19 libbpf-dev bpftool protobuf-compiler wrk python3 openssl curl lua5.4 nats-server
FUZZ_SECONDS ?= 20

.PHONY: help deps build run test fuzz dev-cluster dev-cluster-down crds lint bench bench-collector

help:
	@echo "make run               build and start the standalone Vizier tracing this host (needs root)"
	@echo "make test              every test: unit, property, fuzz, eBPF and real-cluster suites"
	@echo "make dev-cluster       start a real control plane with simulated nodes; prints its kubeconfig"
	@echo "make dev-cluster-down  stop it"
	@echo "make crds              regenerate crds/yaml from the Rust types"
	@echo "make lint              clippy on every crate"
	@echo "make argocd            regenerate config/argocd/argocd-cm-patch.yaml from the Lua health checks"
	@echo "make manifests         regenerate config/{rbac,manager,default} and config/install.yaml"
	@echo "make bundle            regenerate the OLM bundle in bundle/ and validate it (operator-verify)"
	@echo "make bench             benchmarks, each printed as a ratio against a baseline in the same run"

deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@command -v cargo >/dev/null || { echo "cargo (rustup) is required"; exit 1; }
	@command -v go >/dev/null || { echo "go is required to build the Kubernetes test bed"; exit 1; }
	@command -v cargo-fuzz >/dev/null || { echo "installing cargo-fuzz"; cargo install -q --locked cargo-fuzz; }

build: deps
	cargo build -p pixie-vizier

run: build
	cargo build -p pixie-cli
	$(VIZIER) standalone --listen 127.0.0.1:50300

# One control plane for the whole run, torn down on exit (and by its watchdog if make is killed).
test: deps
	@log=$$(mktemp); \
	if $(MAKE) --no-print-directory fuzz >"$$log" 2>&1; then tail -n 1 "$$log"; rm -f "$$log"; \
	else cat "$$log"; rm -f "$$log"; echo "fuzzing the HTTP parser failed"; exit 1; fi
	cargo build --workspace --all-targets
	@$(CLUSTER) bin-dir >/dev/null
	@tests/otelcol/build.sh >/dev/null
	@set -e; dir=$$(mktemp -d /tmp/pixie-test-cluster.XXXXXX); \
	trap '$(CLUSTER) down '"$$dir" EXIT; \
	echo "starting the test control plane in $$dir"; \
	kubeconfig=$$($(CLUSTER) up "$$dir" --owner $$$$); \
	PIXIE_TEST_KUBECONFIG=$$kubeconfig PIXIE_K8S_BIN=$$($(CLUSTER) bin-dir) \
	  cargo test --workspace --all-targets --no-fail-fast

fuzz: deps
	cd vizier/protocols/fuzz && RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=$(CACHE)/fuzz-target \
	  cargo fuzz run http_stream -- -max_total_time=$(FUZZ_SECONDS)

dev-cluster: deps
	@kubeconfig=$$($(CLUSTER) up $(DEV_CLUSTER_DIR)); \
	echo "kubeconfig: $$kubeconfig"; \
	echo "kubectl:    $$($(CLUSTER) bin-dir)/kubectl"; \
	echo "try:        $$($(CLUSTER) bin-dir)/kubectl --kubeconfig $$kubeconfig get nodes"

dev-cluster-down:
	@$(CLUSTER) down $(DEV_CLUSTER_DIR)

crds:
	cargo run -q -p xtask -- crds

# config/argocd/argocd-cm-patch.yaml from the Argo CD health checks in config/argocd/<Kind>/health.lua
# (their tests, run by lua5.4, are part of `cargo test -p xtask`).
.PHONY: argocd
argocd:
	cargo run -q -p xtask -- argocd

# The operator's install objects (operator/src/install.rs) as kustomize bases under config/ and one
# flat config/install.yaml; `cargo test -p xtask` fails when the checked-in files are stale.
.PHONY: manifests
manifests:
	cargo run -q -p xtask -- manifests

# The OLM registry+v1 bundle from the same sources, then the operator-framework validators
# (bundle/verify.sh installs the pinned operator-verify on first use): no error, no warning.
.PHONY: bundle
bundle:
	cargo run -q -p xtask -- bundle
	bash bundle/verify.sh

lint:
	cargo clippy --workspace --all-targets -- -D warnings

# Benchmarks print ratios against a baseline measured in the same run; release builds, so the first
# run compiles for a while.
bench: bench-collector bench-pxl bench-operator

bench-collector: deps
	cargo build -q --release -p pixie-collector -p pixie-store --example http_overhead_bench --example ingest_bench
	$(CARGO_TARGET_DIR)/release/examples/http_overhead_bench
	$(CARGO_TARGET_DIR)/release/examples/ingest_bench --total-mib 1280

# The PxL engine against DuckDB (PyPI `duckdb`) on the same 10 million generated http_events rows;
# prints one line with both times and the ratio. ROWS=200000 for a quick run. Release build: only here.
.PHONY: bench-pxl
bench-pxl: deps
	@python3 -c 'import duckdb' 2>/dev/null || python3 -m pip install -q duckdb
	cargo build --release -p pixie-engine --example service_stats_bench
	ROWS=$${ROWS:-10000000} $(CARGO_TARGET_DIR)/release/examples/service_stats_bench

# Seconds from `kubectl apply` of the sample Vizier to Ready=True, and API writes at steady state.
.PHONY: bench-operator
bench-operator: deps
	cargo test -p pixie-tests --test operator -- --ignored --exact bench_operator_apply_to_ready --nocapture
