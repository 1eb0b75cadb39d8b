# aosm-artifact-operator: developer entry points. `make help` lists them.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

# Pinned external tools (registry, skopeo, oras, crane, regctl, helm, kubectl) are
# installed and cached by scripts/tools.sh, which prints their bin directory last.
TOOLS := bash scripts/tools.sh

.PHONY: help test test-unit test-node build demo demo-copy bench fmt lint tools transfer-example store-example crds crdcheck image bench-controller

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-17s %s\n", $$1, $$2}'

tools: ## install/cache the pinned tools and print their versions
	@$(TOOLS) >/dev/null

# While the tests run (they mostly wait on the processes they start), the node tier's
# static image binary is built in the background (scripts/image.sh --binary, its own
# process group, killed on exit; its output is dropped, since the node tier's own
# scripts/image.sh then finds the binary built, or builds it and reports any failure).
test: ## tools, then cargo fmt --check, clippy -D warnings, cargo test (what CI runs)
	@step() { printf '\n==> make test [%s] %s\n' "$$1" "$$2"; }; \
	fail() { printf '\n==> make test FAILED at: %s\n' "$$1" >&2; exit 1; }; \
	step 1/4 "scripts/tools.sh"; \
	bin=$$($(TOOLS) | tail -n 1) || fail "scripts/tools.sh (installing the test tools)"; \
	export PATH="$$bin:$$PATH"; \
	step 2/4 "cargo fmt --all -- --check"; \
	cargo fmt --all -- --check || fail "cargo fmt --all -- --check (run 'make fmt' to fix)"; \
	step 3/4 "cargo clippy --workspace --all-targets -- -D warnings"; \
	cargo clippy --workspace --all-targets -- -D warnings || fail "cargo clippy --workspace --all-targets -- -D warnings"; \
	export RUST_TEST_THREADS="$${RUST_TEST_THREADS:-$$(( $$(nproc) * 2 ))}"; \
	step 4/4 "cargo test --workspace --all-targets ($$RUST_TEST_THREADS tests at once per binary; tools from $$bin)"; \
	cargo test --workspace --all-targets --no-run || fail "cargo test --workspace --all-targets (build)"; \
	setsid bash scripts/image.sh --binary >/dev/null 2>&1 & prebuild=$$!; \
	trap 'status=$$?; kill -- -$$prebuild 2>/dev/null || true; wait $$prebuild 2>/dev/null || true; exit $$status' EXIT; \
	cargo test --workspace --all-targets || fail "cargo test --workspace --all-targets"; \
	printf '\n==> make test: all passed\n'

test-unit: ## the fast tier: unit and in-process tests (fake registry, fake API server), no external tool
	cargo test --workspace --lib --bins --test 'inproc_*'

test-node: ## the node tier alone (root): a real single-node cluster, pods pulling from the bridge (tests/node_e2e.rs)
	@bin=$$($(TOOLS) | tail -n 1); export PATH="$$bin:$$PATH"; cargo test --test node_e2e

build: ## release build: target/release/aosm-artifact-operator
	cargo build --release

image: ## static binary + OCI image (no Docker), pushed: make image IMAGE=host[:port]/repo:tag [INSECURE=1]
	@[[ -n "$(IMAGE)" ]] || { echo "usage: make image IMAGE=host[:port]/repo:tag [INSECURE=1]  (e.g. IMAGE=127.0.0.1:5000/aosm-artifact-operator:0.1.0)" >&2; exit 2; }
	INSECURE=$(INSECURE) bash scripts/image.sh "$(IMAGE)"

demo: ## the operator end to end: local kube-apiserver, registries, Helm repo, AOSM emulator, helm install, examples/publish/ (NODE=1, root: the controller as a pod on a single-node cluster)
	NODE=$(NODE) bash scripts/demo.sh

demo-copy: ## the copy engine alone: two registries + a Helm repo, an image index and a chart copied with the CLI
	bash scripts/demo-copy.sh

store-example: ## the manual routine as store login/push/list/pull/seal against the local AOSM emulator
	bash scripts/store-example.sh

transfer-example: ## transfer -f against the local AOSM emulator (image + ARM template into a store)
	bash scripts/transfer-example.sh

bench: ## copy benchmark: ours (glibc, musl) against crane, oras, skopeo, regctl and a curl push (RUNS=5 by default); goals pass/fail
	bash scripts/bench-copy.sh

bench-controller: ## N=200 ArtifactTransfers through the controller: time to Ready, RSS, ARM/registry requests, steady state
	bash scripts/bench-controller.sh

crds: ## regenerate crds/ from the Rust types in src/api, and its copies in the chart and deploy/base (tests fail while they are stale)
	AOSM_UPDATE_CRDS=1 cargo test --test api crds_are_up_to_date
	for dir in charts/aosm-artifact-operator/crds deploy/base/crds; do \
	  rm -f $$dir/*.yaml && cp crds/*.yaml $$dir/; \
	done

crdcheck: ## check crds/, examples/, tests/fixtures/invalid/ with the API server's validation code (Go)
	cd tests/crdcheck && go build -o $(CURDIR)/target/crdcheck .
	target/crdcheck crds examples tests/fixtures/invalid

fmt: ## format the Rust code
	cargo fmt --all

lint: ## clippy with -D warnings, rustfmt check, and shellcheck on scripts/ (if installed)
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	@if command -v shellcheck >/dev/null; then shellcheck -x scripts/*.sh .ci/run && echo "shellcheck: clean"; \
	else echo "shellcheck not installed: skipped (apt-get install shellcheck)"; fi
