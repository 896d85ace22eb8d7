"""Repository rules that a reviewer would otherwise check by hand."""

from __future__ import annotations

import importlib
import ipaddress
import os
import re
import subprocess
from pathlib import Path

import yaml

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
            if name.endswith("plugins/module_utils/spec.py") and line.rstrip().endswith("# named ranges, not traffic"):
                continue  # the subnet rules name the ranges they judge; no test sends anything there
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


def test_every_integration_module_declares_its_clusters():
    """conftest removes what a killed session left of a module's declared clusters before its first test,
    and checks exactly those after its last: a module without CLUSTERS would let leftovers trip the next run.
    Modules run side by side (make test's workers), so no two may name the same cluster."""
    missing = [p.name for p in sorted((ROOT / "tests/integration").glob("test_*.py"))
               if not re.search(r"(?m)^CLUSTERS = ", p.read_text())]
    assert not missing, f"integration modules without CLUSTERS: {missing}"
    owners: dict[str, list[str]] = {}
    for path in sorted((ROOT / "tests/integration").glob("test_*.py")):
        module = importlib.import_module(f"tests.integration.{path.stem}")
        for cluster in module.CLUSTERS:
            owners.setdefault(cluster, []).append(path.stem)
    assert not {c: m for c, m in owners.items() if len(m) > 1}, "clusters named by more than one module"


def test_ci_runs_make_test_only():
    lines = [line for line in (ROOT / ".ci/run").read_text().splitlines() if line and not line.startswith("#")]
    assert lines[-1].strip() == "exec make test"


COLLECTION = ROOT / "collections" / "ansible_collections" / "rax" / "carina"
# What a COE owns: its words, ports and client. None of it may appear in the generic parts.
COE_WORDS = re.compile(r"(?i)(?<![a-z])(swarm|manager|managers|docker|2376|2377|7946|4789)(?![a-z0-9])")
GENERIC = ["playbooks", "roles/provider_common", "roles/provider_openstack", "roles/provider_static",
           "roles/lb_haproxy", "roles/provider_local", "plugins/module_utils/spec.py",
           "plugins/modules/cluster_spec.py", "plugins/modules/cluster_record.py", "plugins/filter/openstack.py"]
# The local provider's hosts are containers on a Docker engine: that word is its own, not Swarm's.
OWN_WORDS = {"roles/provider_local": {"docker"}}
# The record migration names the first schema's Swarm-only keys, which it renames.
MIGRATION = re.compile(r"schema 0|removing_managers|\"managers\"|setdefault\(\"coe\", \"swarm\"\)|master or worker")


def test_the_shared_flow_and_providers_carry_no_coe_word_or_port():
    """Ports and words of a COE live in its driver and contract, never in the shared flow, the providers,
    the load balancer role or the planning rules (examples in module docs excepted: they are docs)."""
    offenders = []
    for part in GENERIC:
        base = COLLECTION / part
        for path in [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file()):
            allowed = OWN_WORDS.get(part, set())
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if MIGRATION.search(line):
                    continue
                words = {m.group(1).lower() for m in COE_WORDS.finditer(line)} - allowed
                if words:
                    offenders.append(f"{path.relative_to(COLLECTION)}:{number}: {sorted(words)}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_every_driver_role_declares_its_entry_points():
    """COE drivers declare every entry point the shared flow calls; providers every provider entry point."""
    coe_points = {"certificates", "preflight", "runtime", "form", "remove", "verify", "credentials", "reset"}
    provider_points = {"main", "members", "members_absent", "teardown", "delete"}
    roles = COLLECTION / "roles"
    drivers = sorted(p.name for p in roles.iterdir() if p.name.startswith(("coe_", "provider_")))
    assert "coe_swarm" in drivers and {"provider_local", "provider_openstack", "provider_static"} <= set(drivers)
    for name in drivers:
        if name == "provider_common":
            continue
        specs = yaml.safe_load((roles / name / "meta" / "argument_specs.yml").read_text())["argument_specs"]
        wanted = coe_points if name.startswith("coe_") else provider_points
        assert wanted <= set(specs), f"{name} lacks entry points {sorted(wanted - set(specs))}"
        for point in wanted - {"main"}:
            assert (roles / name / "tasks" / f"{point}.yml").is_file(), f"{name}: tasks/{point}.yml missing"


def test_action_groups_hold_only_modules_with_the_groups_options():
    """A module_defaults on a group sets options every module of the group must take: the OpenStack
    connection options for group openstack; no other module is in any group."""
    collection = ROOT / "collections" / "ansible_collections" / "rax" / "carina"
    groups = yaml.safe_load((collection / "meta" / "runtime.yml").read_text())["action_groups"]
    members = [m for m in groups["openstack"] if isinstance(m, str)]
    assert sorted(members) == ["cluster_state", "ironic_hosts", "nova_hosts", "octavia_lb"]
    assert groups["carina"] == [{"metadata": {"extend_group": ["rax.carina.openstack"]}}]
    for path in sorted((collection / "plugins" / "modules").glob("*.py")):
        docs = yaml.safe_load(re.search(r'DOCUMENTATION = r"""(.*?)"""', path.read_text(), re.S).group(1))
        takes_cloud = "rax.carina.openstack" in docs.get("extends_documentation_fragment", [])
        assert takes_cloud == (path.stem in members), f"{path.stem}: OpenStack options {takes_cloud}"


def test_no_plugin_is_newer_than_the_collection():
    """`version_added` names the release that brings a plugin or option: none may be later than the version
    galaxy.yml gives the collection (nothing is released yet, so every one is that first release)."""
    collection = ROOT / "collections" / "ansible_collections" / "rax" / "carina"
    version = yaml.safe_load((collection / "galaxy.yml").read_text())["version"]

    def key(text):
        return tuple(int(part) for part in text.split("."))

    later = {}
    for path in sorted((collection / "plugins").rglob("*.py")):
        for added in re.findall(r"version_added: ['\"]?([0-9.]+)", path.read_text()):
            if key(added) > key(version):
                later.setdefault(path.name, []).append(added)
    assert not later, f"version_added later than galaxy.yml's {version}: {later}"


def test_one_license_everywhere_with_its_text():
    collection = ROOT / "collections" / "ansible_collections" / "rax" / "carina"
    galaxy = yaml.safe_load((collection / "galaxy.yml").read_text())
    project = re.search(r'^license = "([^"]+)"$', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    assert galaxy["license"] == [project] == ["GPL-3.0-or-later"]
    text = (ROOT / "LICENSE").read_text()
    assert "GNU GENERAL PUBLIC LICENSE" in text and "Version 3, 29 June 2007" in text
    assert (collection / "LICENSE").read_text() == text
    headers = [p for p in (collection / "plugins").rglob("*.py")
               if "SPDX-License-Identifier: GPL-3.0-or-later" not in p.read_text()]
    assert headers == [], "plugins without the license header"


def awx_playbooks(project) -> list[str]:
    """The playbooks AWX offers for a project: .yml/.yaml files outside roles, tasks, group_vars,
    host_vars and hidden folders, with a line that starts (after spaces and a dash) with hosts,
    include or import_playbook and a colon."""
    starts = re.compile(r"^\s*-?\s*(hosts|include|import_playbook):")
    skipped = ("roles", "tasks", "group_vars", "host_vars")
    found = []
    for folder, subfolders, files in os.walk(project):
        subfolders[:] = sorted(d for d in subfolders if d not in skipped and not d.startswith("."))
        for name in sorted(files):
            path = Path(folder, name)
            if name.endswith((".yml", ".yaml")) and any(
                    starts.match(line) for line in path.read_text(errors="ignore").splitlines()):
                found.append(str(path.relative_to(project)))
    return found


def test_awx_lists_the_site_playbooks():
    listed = awx_playbooks(ROOT)
    for name in ("create", "scale", "delete"):
        assert f"playbooks/{name}.yml" in listed, listed
    required = yaml.safe_load((ROOT / "collections" / "requirements.yml").read_text())
    collection = ROOT / "collections" / "ansible_collections" / "rax" / "carina"
    galaxy = yaml.safe_load((collection / "galaxy.yml").read_text())
    assert {c["name"]: c["version"] for c in required["collections"]} == galaxy["dependencies"]


def test_the_collection_readme_has_the_sections_of_certified_content():
    text = (ROOT / "collections" / "ansible_collections" / "rax" / "carina" / "README.md").read_text()
    sections = re.findall(r"^## (.+)$", text, re.M)
    for wanted in ("Description", "Requirements", "Installation", "Use cases", "Testing", "Contributing",
                   "Support", "Release notes", "Related information", "License"):
        assert wanted in sections, f"README.md has no section {wanted!r}"
