#!/usr/bin/env bash
# The test command: sets up everything the tests need, then runs them all.
#
#   bash scripts/test.sh
#
# On a fresh machine it creates .venv (Python peer checks: scikit-learn,
# pyarrow, statsmodels, DuckDB, jsonschema) and installs Debian's chromium
# when /usr/bin/chromium is missing (the report is opened in headless
# Chromium; apt-get needs root or sudo), then runs formatting, lints, docs
# and every test of the workspace. Each phase prints its time.
# Environment: SEGTUNE_SKIP_LINT=1 skips fmt, clippy and doc (for a quick
# local loop); SEGTUNE_CHROMIUM names another Chromium (then nothing is
# installed). The browser test fails under CI (CI set) without a Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

phase_start=0
phase() {
    local now
    now=$(date +%s)
    if [ "$phase_start" != 0 ]; then
        echo "== done in $((now - phase_start)) s"
    fi
    phase_start=$now
    echo "== $1"
}
trap 'echo "== failed after $(( $(date +%s) - phase_start )) s in the phase above" >&2' ERR
total_start=$(date +%s)

phase "python peer environment (.venv)"
python=${PYTHON:-python3}
stamp=.venv/.requirements-peer.txt
if [ ! -x .venv/bin/python ] || ! cmp -s scripts/requirements-peer.txt "$stamp"; then
    "$python" -m venv .venv
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r scripts/requirements-peer.txt
    cp scripts/requirements-peer.txt "$stamp"
fi
export SEGTUNE_PYTHON="$root/.venv/bin/python"
"$SEGTUNE_PYTHON" -c "import sklearn, pyarrow, statsmodels, duckdb, jsonschema; print('scikit-learn', sklearn.__version__, '/ pyarrow', pyarrow.__version__, '/ statsmodels', statsmodels.__version__, '/ duckdb', duckdb.__version__)"

if [ "${SEGTUNE_SKIP_LINT:-0}" != 1 ]; then
    phase "cargo fmt --check"
    cargo fmt --all -- --check

    phase "cargo clippy"
    cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
fi

phase "chromium for the report check"
if [ -z "${SEGTUNE_CHROMIUM:-}" ]; then
    if [ ! -x /usr/bin/chromium ]; then
        sudo=""
        [ "$(id -u)" = 0 ] || sudo=sudo
        export DEBIAN_FRONTEND=noninteractive
        $sudo apt-get install -y --no-install-recommends chromium \
            || { $sudo apt-get update && $sudo apt-get install -y --no-install-recommends chromium; }
    fi
    export SEGTUNE_CHROMIUM=/usr/bin/chromium
fi
"$SEGTUNE_CHROMIUM" --version

phase "cargo test (workspace)"
cargo test --workspace --all-targets --locked

phase "doc tests"
cargo test --workspace --doc --locked --quiet

phase "walkthroughs are current (notebooks-equivalent)"
for example in notebooks-equivalent/examples/*.rs; do
    name=$(basename "$example" .rs)
    cargo run --locked --quiet -p segtune-notebooks --example "$name" -- --mode check
done

phase "benches build (cargo bench --no-run)"
cargo bench --workspace --no-run --locked --quiet

if [ "${SEGTUNE_SKIP_LINT:-0}" != 1 ]; then
    phase "cargo doc"
    RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --document-private-items --locked --quiet
fi

phase "end"
echo "== all phases passed in $(( $(date +%s) - total_start )) s"
