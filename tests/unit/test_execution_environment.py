"""Execution environments: ansible-builder's introspection finds every dependency of the installed
collection, and the project's execution-environment.yml makes a build context whose own introspection
step (the one the image build runs) gives the same. No image is built: there is no registry here."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import COLLECTION, ROOT, bare_env, install_collection

BIN = Path(sys.executable).parent
# Import name -> the package that provides it, for what the collection imports beyond the standard library.
PACKAGES = {"cryptography": "cryptography", "docker": "docker", "openstack": "openstacksdk"}
WANTED_SYSTEM = ["openssh-client [platform:dpkg]", "openssh-clients [platform:rpm]"]


def run(*args: str, cwd: Path) -> str:
    """A command with no Ansible settings of ours: run from a folder without ansible.cfg."""
    proc = subprocess.run(args, cwd=cwd, env=bare_env(), capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("ee")
    assert (install_collection(base) / "requirements.txt").exists()
    return base / "collections"


def names(requirements: list[str]) -> dict[str, str]:
    """{package name: requirement without its origin comment}."""
    out = {}
    for line in requirements:
        spec = line.split("#", 1)[0].strip()
        if not spec:
            continue
        out[spec.split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower()] = spec
    return out


def third_party_imports() -> set[str]:
    """Top-level modules the collection's plugins import that are neither the standard library nor Ansible."""
    found = set()
    for path in (COLLECTION / "plugins").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    # yaml (PyYAML) comes with ansible-core, which every execution environment has.
    provided = ("ansible", "ansible_collections", "__future__", "yaml")
    return {m for m in found if m not in sys.stdlib_module_names and m not in provided}


def test_every_import_of_the_collection_is_a_declared_dependency():
    imports = third_party_imports()
    assert imports <= set(PACKAGES), f"imports with no package in PACKAGES: {imports - set(PACKAGES)}"
    declared = names((COLLECTION / "requirements.txt").read_text().splitlines())
    assert {PACKAGES[m] for m in imports} == set(declared), declared


def test_introspection_of_the_installed_collection(installed):
    out = run(str(BIN / "ansible-builder"), "introspect", "--sanitize", str(installed), cwd=installed)
    data = yaml.safe_load(out)
    python = names(data["python"])
    assert set(python) == {"cryptography", "docker", "openstacksdk"}, data
    assert all("from collection rax.carina" in line for line in data["python"] + data["system"])
    assert sorted(line.split("#")[0].strip() for line in data["system"]) == WANTED_SYSTEM


def test_the_project_definition_makes_a_context_whose_introspection_agrees(installed, tmp_path):
    context = tmp_path / "context"
    run(str(BIN / "ansible-builder"), "create", "-f", str(ROOT / "execution-environment.yml"), "-c", str(context),
        "--output-filename", "Containerfile", cwd=tmp_path)
    containerfile = (context / "Containerfile").read_text()
    assert "introspect.py introspect" in containerfile and "ansible-galaxy collection install" in containerfile
    galaxy = yaml.safe_load((context / "_build" / "requirements.yml").read_text())
    assert "rax.carina" in [c["name"] for c in galaxy["collections"]]
    # The step the image build runs after installing the collections, on the collection as installed.
    run(sys.executable, str(context / "_build" / "scripts" / "introspect.py"), "introspect", str(installed),
        f"--write-pip={tmp_path / 'pip.txt'}", f"--write-bindep={tmp_path / 'bindep.txt'}", cwd=tmp_path)
    pip = names((tmp_path / "pip.txt").read_text().splitlines())
    assert pip == names((COLLECTION / "requirements.txt").read_text().splitlines())
    bindep = [line.split("#")[0].strip() for line in (tmp_path / "bindep.txt").read_text().splitlines() if line]
    assert sorted(bindep) == WANTED_SYSTEM
