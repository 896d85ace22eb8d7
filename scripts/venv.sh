#!/usr/bin/env bash
# Create or refresh the project's virtualenv (.venv) from python3.13 (or 3.12), with the
# pinned versions of requirements/. A stamp holding the hash of the pins makes a second run
# a no-op; the carina package (src/carina) is installed editable.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${CARINA_VENV:-.venv}

pick_python() {
  for p in "${CARINA_PYTHON:-}" python3.13 python3.12 \
           /root/.pyenv/versions/3.13.*/bin/python3.13 /root/.pyenv/versions/3.12.*/bin/python3.12; do
    [ -n "$p" ] || continue
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
      command -v "$p"; return 0
    fi
  done
  echo "venv.sh: need python3.13 or python3.12 (ansible-core 2.21 needs >= 3.12)" >&2
  return 1
}

want=$(cat requirements/venv.txt requirements/constraints.txt pyproject.toml | sha256sum | cut -c1-16)
stamp="$VENV/.carina-stamp"
if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
py=$(pick_python)
[ -x "$VENV/bin/python" ] || "$py" -m venv "$VENV"
# uv (pinned in venv.txt) installs the rest: cold, in seconds where pip takes minutes. Its cache is .cache/uv;
# like pip --no-compile, it leaves bytecode to be compiled on first use (compiling every file of every
# package up front, tens of thousands in the ansible bundle, was most of pip's install time).
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "$(grep -E '^uv==' requirements/venv.txt)"
export UV_CACHE_DIR=${UV_CACHE_DIR:-$PWD/.cache/uv}
"$VENV/bin/uv" pip install -q --python "$VENV/bin/python" -r requirements/venv.txt -c requirements/constraints.txt
"$VENV/bin/uv" pip install -q --python "$VENV/bin/python" --no-deps -e .
echo "$want" > "$stamp"
echo "venv.sh: $VENV ready (ansible-core $("$VENV/bin/python" -c "from ansible.release import __version__ as v; print(v)"))" >&2
