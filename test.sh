#!/usr/bin/env bash
# Runs the tests: Rust unit tests and sqllogictests (one build, dev profile), then the end-to-end tests through
# real Jupyter clients, the CLI, and every notebook in tutorials/ and notebooks/ executed headless.
#
#   ./test.sh                  everything (what CI runs); extra arguments go to pytest (./test.sh -k interrupt)
#   ./test.sh --rust           the Rust tests only: every crate's unit tests and the sqllogictest files
#   ./test.sh --slt [FILTER]   the sqllogictest files whose path contains FILTER (text/, core/files, ...)
#   ./test.sh --unit [FILTER]  the Rust unit tests whose name contains FILTER (kestrel-engine's lib test binaries)
#   ./test.sh --py [ARGS...]   pytest only, the kernel rebuilt and reinstalled first (--py -k interrupt,
#                              --py tests/test_notebooks.py -k tutorial_06)
#
# Every mode builds with --workspace, so the features of shared dependencies never change between modes and
# nothing is rebuilt for switching (a `cargo ... -p crate` build would rebuild DataFusion).
set -euo pipefail
source "$(dirname "$0")/scripts/setup.sh"

mode=all
case "${1:-}" in
  --rust|--slt|--unit|--py) mode="${1#--}"; shift ;;
esac

ensure_system_packages
ensure_venv
ensure_model

cargo_test() { (cd "$KESTREL_ROOT" && env -u CI cargo test --locked --workspace "$@"); }  # CI unset: see build_kestrel

case "$mode" in
  slt)
    say "sqllogictests ${1:-(all files)}"
    cargo_test --test sqllogictests -- "$@"
    exit 0 ;;
  unit)
    say "unit tests ${1:-(all)}"
    cargo_test --lib --bins -- "$@"
    exit 0 ;;
esac

if [ "$mode" = py ]; then
  build_kestrel --bins
else
  build_kestrel --bins --tests
fi
install_kernel

if [ "$mode" != py ]; then
  say "cargo test"
  cargo_test --bins --tests
fi
[ "$mode" = rust ] && exit 0

say "pytest (kernel protocol, notebooks, CLI)"
export KESTREL_BIN="$VENV/bin/kestrel"
export KESTREL_HISTORY="$(mktemp -d)/history.jsonl"
cd "$KESTREL_ROOT"
targets=(tests)  # unless the arguments name test files themselves
for a in "$@"; do case "$a" in tests/*) targets=() ;; esac; done
"$VENV/bin/python" -m pytest "${targets[@]}" -q -p no:cacheprovider "$@"
