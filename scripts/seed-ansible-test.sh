#!/usr/bin/env bash
# ansible-test bootstraps pip in its venvs with a get-pip script downloaded from
# ci-files.testing.ansible.com, which this machine cannot reach. Pre-seed the cache with a
# small script of our own that bootstraps pip through ensurepip and then installs the
# version ansible-test asked for from the package index we do reach.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${1:-.venv/bin/python}
ver=$("$py" - <<'PY'
from ansible_test._internal.python_requirements import get_venv_packages
class P:  # get_venv_packages only reads .version
    version = "3.13"
print(get_venv_packages(P())["pip"])
PY
)
dest="$HOME/.ansible/test/cache/get_pip_${ver//./_}.py"
mkdir -p "$(dirname "$dest")"
cat > "$dest.tmp" <<'PY'
"""Offline stand-in for get-pip.py: ensurepip, then pip installs what was asked."""
import subprocess
import sys

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.run([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"], check=True,
               stdout=subprocess.DEVNULL)
if args and args[0] != "install":
    args.insert(0, "install")
subprocess.run([sys.executable, "-m", "pip", *args, "--upgrade"], check=True)
PY
if ! cmp -s "$dest.tmp" "$dest" 2>/dev/null; then mv "$dest.tmp" "$dest"; else rm -f "$dest.tmp"; fi
echo "seed-ansible-test.sh: $dest" >&2
