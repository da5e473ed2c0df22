#!/usr/bin/env bash
# Installs the official OpenAI clients the tests drive, once:
#   Python: openai (PyPI) into ~/.cache/wafer/openai-venv
#   JavaScript: openai (npm) into this folder's node_modules (gitignored)
# Prints the venv's python on success. Versions are pinned here.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${WAFER_OPENAI_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/wafer/openai-venv}"
python_version="openai==3.54.0"
if ! "$venv/bin/python" -c 'import openai, sys; sys.exit(openai.__version__ != "3.54.0")' 2>/dev/null; then
  echo "==> installing $python_version into $venv" >&2
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$python_version" >&2
fi
if [ ! -f "$here/node_modules/openai/package.json" ] ||
   ! grep -q '"version": "7.57.0"' "$here/node_modules/openai/package.json"; then
  echo "==> npm install (openai 7.57.0) in $here" >&2
  (cd "$here" && npm install --silent --no-audit --no-fund >&2)
fi
echo "$venv/bin/python"
