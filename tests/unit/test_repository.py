"""Repository rules that a reviewer would otherwise check by hand."""

from __future__ import annotations

import ipaddress
import re
import subprocess

from tests.helpers import ROOT

IPV4 = re.compile(r"(?<![\d.])(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})(?![\d.])")
ALLOWED = [ipaddress.ip_network("198.18.0.0/15"), ipaddress.ip_network("127.0.0.0/8"),
           ipaddress.ip_network("0.0.0.0/32")]


def tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    return [f for f in out.stdout.splitlines() if (ROOT / f).is_file()]


def test_test_addresses_stay_in_198_18_0_0_15():
    """Tests, scenarios, samples and scripts never name an address outside 198.18.0.0/15 or loopback."""
    offenders = []
    for name in tracked_files():
        if not name.startswith(("tests/", "molecule/", "inventories/", "scripts/", "Makefile", ".ci/", "playbooks/",
                                "collections/")):
            continue
        for lineno, line in enumerate((ROOT / name).read_text(errors="replace").splitlines(), 1):
            for match in IPV4.findall(line):
                try:
                    addr = ipaddress.ip_address(match)
                except ValueError:
                    continue  # a version number such as 1.2.3.4000
                if addr.version == 4 and not any(addr in net for net in ALLOWED) and addr.is_private:
                    offenders.append(f"{name}:{lineno}: {match}")
    assert not offenders, "private addresses outside 198.18.0.0/15:\n" + "\n".join(offenders)


def test_no_sanity_ignore_files():
    ignores = list((ROOT / "collections/ansible_collections/rax/carina/tests/sanity").glob("ignore-*.txt"))
    assert not [p for p in ignores if p.read_text().strip()], f"sanity ignore entries: {ignores}"


def test_ci_runs_make_test_only():
    lines = [line for line in (ROOT / ".ci/run").read_text().splitlines() if line and not line.startswith("#")]
    assert lines[-1].strip() == "exec make test"
