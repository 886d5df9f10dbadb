#!/usr/bin/env bash
# `make miri`: the tests of crates/dense, the one crate with `unsafe`, under Miri, with
# AVX-512 enabled (which brings AVX2 and FMA) so that Miri interprets both kernels
# themselves (not only the portable loop).
# Its own target directory: Miri's artefacts never mix with the normal build's.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
# shellcheck source=lib.sh
source scripts/lib.sh
ensure_miri
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}/miri
RUSTFLAGS="-C target-feature=+avx512f" cargo +nightly miri test --locked -p mlops-dense
