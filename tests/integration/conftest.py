"""Integration tests need the engine and images `make test` sets up; they clean up after themselves."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import ROOT, owned_by_cluster


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


def remove_leftovers(clusters: set[str]) -> None:
    """Objects of the test clusters that an earlier, killed test session left: removed by name, with a
    line saying so, so that no test adopts or trips over them."""
    found = owned_by_cluster()
    stale = {kind: sorted(name for name, cluster in objects.items() if cluster in clusters)
             for kind, objects in found.items()}
    if not any(stale.values()):
        return
    print(f"removing what an earlier test session left: {stale}")
    for kind, command in (("containers", ["rm", "-f", "-v"]), ("volumes", ["volume", "rm", "-f"]),
                          ("networks", ["network", "rm"])):
        if stale[kind]:
            subprocess.run(["docker", *command, *stale[kind]], check=True, capture_output=True, timeout=300)


@pytest.fixture(scope="session")
def engine():
    """The Docker engine must answer (make test starts one)."""
    if not shutil.which("docker") or not os.environ.get("DOCKER_HOST"):
        pytest.fail("no Docker engine: run the tests through `make test` (it starts one) or set DOCKER_HOST")
    subprocess.run(["docker", "version"], check=True, capture_output=True, timeout=30)
    return os.environ["DOCKER_HOST"]


@pytest.fixture(scope="module", autouse=True)
def leaves_nothing(request, engine):
    """Each module says which clusters (carina.cluster labels) it makes, in CLUSTERS. Before its first test,
    what a killed session left of them is removed; after its last, nothing of them may be left. The engine
    may be shared with other clusters coming and going meanwhile (another worker's modules, someone else's):
    only the module's own are looked at."""
    clusters = getattr(request.module, "CLUSTERS", None)
    if clusters is None:
        pytest.fail(f"{request.module.__name__} must say which clusters it makes (CLUSTERS = (...))")
    remove_leftovers(set(clusters))
    yield
    left = {kind: sorted(name for name, cluster in objects.items() if cluster in clusters)
            for kind, objects in owned_by_cluster().items()}
    assert not any(left.values()), f"{request.module.__name__} left objects behind: {left}"


@pytest.fixture
def ssh_key(tmp_path):
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


@pytest.fixture(scope="session")
def test_cloud():
    """The test cloud (testcloud/cloud.py), up for every module that needs it; its facts (cloud.json).
    Brought down at the end of the session only if it was not up before."""
    def cloud_cmd(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["python3", str(ROOT / "testcloud" / "cloud.py"), *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=900, check=False)

    was_up = cloud_cmd("status").returncode == 0
    proc = cloud_cmd("up")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    yield json.loads((ROOT / ".cache" / "testcloud" / "cloud.json").read_text())
    if not was_up:
        proc = cloud_cmd("down")
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium (Debian's, which `make test` installs) driven by Playwright; closed at the end."""
    sync_api = pytest.importorskip("playwright.sync_api")
    found = subprocess.run([str(ROOT / "scripts" / "browser.sh")], capture_output=True, text=True, check=False)
    if found.returncode != 0:
        pytest.fail(f"no chromium: {found.stderr.strip()} (make test installs it)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=found.stdout.strip(),
            args=["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"])
        yield chromium
        chromium.close()


@pytest.fixture
def artifacts(request):
    """A folder for what a test keeps for people to look at (screenshots): test-artifacts/<test name>/."""
    folder = Path(os.environ.get("CARINA_TEST_ARTIFACTS", ROOT / "test-artifacts")) / request.node.name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder
