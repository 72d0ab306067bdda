# Weir: the two commands of the Quick start, and a few helpers.
#   make demo   build everything and run the local demo (api + console + agents)
#   make test   run every test suite (what CI runs)
#   make bench  run every benchmark and write BENCHMARKS.md

export CARGO_TARGET_DIR ?= $(HOME)/.cache/weir/target

.PHONY: demo test bench crds fmt lint

demo:
	@scripts/demo.sh

test:
	@scripts/test.sh

bench:
	@scripts/bench.sh

crds:
	cargo run -q -p weir-crds --bin crdgen

fmt:
	cargo fmt --all

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
