# The one entry point. `make help` lists every target.
.DEFAULT_GOAL := help
SHELL := /bin/bash
CARGO_TARGET_DIR ?= $(CURDIR)/target
export CARGO_TARGET_DIR

.PHONY: help build run test lint fmt bench demo proto-lint helm-lint clean miri

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

build: ## Build every crate (debug)
	cargo build --workspace --locked

run: ## Run the whole platform in one process on embedded defaults (mlops up)
	cargo run --locked -p mlops-cli -- up

test: ## fmt check, clippy, all tests with PostgreSQL and tansu started here, Python tests
	scripts/test.sh

miri: ## The tests of the one crate with unsafe (crates/dense, the AVX-512 and AVX2 kernels) under Miri
	scripts/miri.sh

lint: ## fmt check, clippy -D warnings, the crate dependency rule, no unused dependency, the dashboard check
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	scripts/check-deps.sh
	scripts/check-unused-deps.sh
	scripts/check-dashboards.sh

fmt: ## Format the code
	cargo fmt --all

bench: ## Benchmarks (release build): tracking and the registry on SQLite and PostgreSQL; figures on stdout
	scripts/bench.sh

demo: ## Start the platform, run the example pipeline, then the closed loop (drift → retrain → canary → promotion), printing each step
	scripts/demo.sh

proto-lint: ## Lint the contracts with buf (from the npm registry)
	npx --yes @bufbuild/buf@1 lint proto

helm-lint: ## Lint and render the Helm chart
	scripts/helm-lint.sh

clean: ## Remove build output and local data
	cargo clean
	rm -rf data .venv .venv-triton .venv-kserve examples/python/gen
