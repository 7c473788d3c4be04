#!/usr/bin/env bash
# Sets everything up (system packages, build, Python venv with JupyterLab, the `kestrel` kernelspec) and starts
# JupyterLab on tutorials/. Options: --no-start (set up only), --port N. KESTREL_TOKEN sets JupyterLab's token.
set -euo pipefail
source "$(dirname "$0")/scripts/setup.sh"

start=1
port=8888
while [ $# -gt 0 ]; do
  case "$1" in
    --no-start) start=0 ;;
    --port) port="$2"; shift ;;
    *) echo "usage: ./install.sh [--no-start] [--port N]" >&2; exit 2 ;;
  esac
  shift
done

ensure_system_packages
ensure_venv
ensure_model
build_kestrel --bins
install_kernel
say "kernelspec: $("$VENV/bin/jupyter" kernelspec list | grep kestrel)"
say "command line: $VENV/bin/kestrel sql -c 'SELECT 1'"

[ "$start" -eq 1 ] || exit 0
args=(--notebook-dir="$KESTREL_ROOT/tutorials" --port="$port" --no-browser --ip=127.0.0.1
      --MultiKernelManager.default_kernel_name=kestrel)
[ "$(id -u)" -eq 0 ] && args+=(--allow-root)
[ -n "${KESTREL_TOKEN:-}" ] && args+=(--IdentityProvider.token="$KESTREL_TOKEN")
say "starting JupyterLab on tutorials/ (choose the 'Kestrel (SQL)' kernel)"
exec "$VENV/bin/jupyter" lab "${args[@]}"
