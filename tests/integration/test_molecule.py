"""The molecule scenarios, run as users run them."""

from __future__ import annotations

import subprocess

import pytest

from tests.helpers import ROOT, env, owned_objects

SCENARIOS = ("hosts", "engine", "swarm", "kubernetes")
# The clusters the scenarios make (conftest checks that nothing of theirs is left).
CLUSTERS = tuple(f"molecule-{s}" for s in SCENARIOS)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario(scenario):
    proc = subprocess.run(
        ["molecule", "test", "-s", scenario], cwd=ROOT, env=env() | {"NO_COLOR": "1", "PY_COLORS": "0"},
        capture_output=True, text=True, timeout=1800, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "idempotence: Executed: Successful" in proc.stdout + proc.stderr
    assert owned_objects(f"molecule-{scenario}") == {"containers": [], "volumes": [], "networks": []}
