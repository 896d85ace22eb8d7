"""Integration tests need the engine and images `make test` sets up; they clean up after themselves."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.helpers import owned_objects


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session", autouse=True)
def engine():
    """The Docker engine must answer (make test starts one); nothing of ours may be left at the end."""
    if not shutil.which("docker") or not os.environ.get("DOCKER_HOST"):
        pytest.fail("no Docker engine: run the tests through `make test` (it starts one) or set DOCKER_HOST")
    subprocess.run(["docker", "version"], check=True, capture_output=True, timeout=30)
    before = owned_objects()
    yield os.environ["DOCKER_HOST"]
    after = owned_objects()
    leftovers = {kind: sorted(set(after[kind]) - set(before[kind])) for kind in after}
    assert not any(leftovers.values()), f"tests left objects behind: {leftovers}"


@pytest.fixture
def ssh_key(tmp_path):
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key
