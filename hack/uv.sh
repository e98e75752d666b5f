#!/usr/bin/env bash
# Puts uv into .tools/bin without touching the system Python: a distribution's Python is often
# "externally managed" (PEP 668) and refuses `pip install`, so uv goes into a bootstrap virtual
# environment under .tools/ (git-ignored). A uv already on PATH is linked instead. Fast no-op when
# .tools/bin/uv works.
set -euo pipefail

LOG_NAME=uv
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
TOOLS="${TOOLS_DIR:-$ROOT/.tools}"
BIN="$TOOLS/bin"
VENV="$TOOLS/uv-venv"
# uv's own releases follow semver; any 0.x from the last two years reads these lock files.
UV_SPEC="${UV_SPEC:-uv>=0.5,<1}"

if [[ -x "$BIN/uv" ]] && "$BIN/uv" --version >/dev/null 2>&1; then
  exit 0
fi
mkdir -p "$BIN"

if [[ -z "${UV_BOOTSTRAP_FORCE:-}" ]] && existing="$(command -v uv 2>/dev/null)" && "$existing" --version >/dev/null 2>&1; then
  ln -sfn "$existing" "$BIN/uv"
  log "using $("$existing" --version) from $existing"
  exit 0
fi

command -v python3 >/dev/null || die "python3 is missing (Debian/Ubuntu: apt-get install -y python3 python3-venv)"
python3 - <<'PY' || die "Python 3.11 or newer is needed, found $(python3 --version 2>&1)"
import sys; sys.exit(sys.version_info < (3, 11))
PY
# Debian splits venv and ensurepip into the python3-venv package (make services installs it as root).
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  die "Python's venv module is missing; install it with:  sudo apt-get install -y python3-venv   (or run 'make services' as root)"
fi

log "installing uv into $VENV (a bootstrap virtual environment; the system Python is not touched)"
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$UV_SPEC"
ln -sfn "$VENV/bin/uv" "$BIN/uv"
ln -sfn "$VENV/bin/uvx" "$BIN/uvx"
log "$("$BIN/uv" --version) in $BIN"
