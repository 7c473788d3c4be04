#!/usr/bin/env bash
# Runs every test: Rust unit tests and sqllogictests (one build, dev profile), then the end-to-end tests through
# real Jupyter clients, the CLI, and every notebook in tutorials/ and notebooks/ executed headless.
# Extra arguments go to pytest (e.g. ./test.sh -k interrupt).
set -euo pipefail
source "$(dirname "$0")/scripts/setup.sh"

ensure_system_packages
ensure_venv
ensure_model
build_kestrel
install_kernel

say "cargo test"
(cd "$KESTREL_ROOT" && env -u CI cargo test --locked --workspace)  # CI unset: see build_kestrel

say "pytest (kernel protocol, notebooks, CLI)"
export KESTREL_BIN="$VENV/bin/kestrel"
export KESTREL_HISTORY="$(mktemp -d)/history.jsonl"
cd "$KESTREL_ROOT"
"$VENV/bin/python" -m pytest tests -q -p no:cacheprovider "$@"
