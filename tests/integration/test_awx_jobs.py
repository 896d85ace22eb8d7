"""The site playbooks run as AWX runs a job template: ansible-runner with a fresh private data folder per
job, the survey's answers (its defaults plus what the user typed, checked against the survey spec) as
extra vars, the project folder as the working folder, a fresh home, no Ansible settings from the caller.
Create, scale and delete follow each other as three jobs: once with the state in the survey's state folder
(in AWX, a volume every job mounts), once with every job's state folder empty at its start, the state taken
from where the cluster keeps it (rax.carina.cluster_state)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.helpers import ROOT, bare_env, owned_objects

NAME = "it-awx"
STATELESS = "it-awx-stateless"
CLUSTERS = (NAME, STATELESS)
SURVEYS = ROOT / "awx" / "surveys"


def answers(job: str, typed: dict) -> dict:
    """The extra vars AWX would pass: every question's default, overridden by the answers, each checked."""
    spec = json.loads((SURVEYS / f"{job}.json").read_text())["spec"]
    out = {}
    for question in spec:
        value = typed.get(question["variable"], question["default"])
        if question["type"] == "integer":
            assert isinstance(value, int) and question["min"] <= value <= question["max"], question
        elif question["type"] == "multiplechoice":
            assert value in question["choices"], question
        else:
            assert question["min"] <= len(value) <= question["max"] or (not question["required"] and value == "")
        assert value != "" or not question["required"], f"{question['variable']} is required"
        out[question["variable"]] = value
    assert set(typed) <= set(out), f"answers to questions the survey does not ask: {set(typed) - set(out)}"
    return out


def job(tmp_path: Path, name: str, extravars: dict, **extra_env: str) -> subprocess.CompletedProcess:
    """One AWX job: extra_env is what its credentials add (an OpenStack credential: OS_CLIENT_CONFIG_FILE)."""
    data = Path(tempfile.mkdtemp(prefix=f"job-{name}-", dir=tmp_path))  # a fresh private data folder per job
    (data / "env").mkdir()
    (data / "env" / "extravars").write_text(json.dumps(extravars))
    # A fresh home, short as an execution environment's (SSH's control sockets live under it).
    home = tempfile.mkdtemp(prefix="awx-")
    env = bare_env(HOME=home, **extra_env)
    try:
        return subprocess.run(["ansible-runner", "run", str(data), "-p", f"playbooks/{name}.yml",
                               "--project-dir", str(ROOT)],
                              env=env, capture_output=True, text=True, timeout=1200, check=False)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_every_survey_question_is_a_variable_of_its_playbook():
    playbooks = ROOT / "collections" / "ansible_collections" / "rax" / "carina" / "playbooks"
    read = {name: (playbooks / f"{name}.yml").read_text() + (playbooks / "converge.yml").read_text()
            for name in ("create", "scale")}
    read["delete"] = (playbooks / "delete.yml").read_text()
    for name, text in read.items():
        spec = json.loads((SURVEYS / f"{name}.json").read_text())["spec"]
        for question in spec:
            assert question["variable"] in text, f"{name}: {question['variable']} is not read by the playbook"


@pytest.mark.parametrize("bad", [{"carina_masters": 2.5}, {"carina_coe": "mesos"}, {"carina_name": ""}])
def test_answers_outside_the_survey_are_refused(bad):
    with pytest.raises(AssertionError):
        answers("create", {"carina_name": NAME} | bad)


def test_create_scale_delete_as_three_awx_jobs(tmp_path):
    state = tmp_path / "state"
    try:
        created = job(tmp_path, "create", answers("create", {"carina_name": NAME, "carina_home": str(state),
                                                             "carina_state_from_store": "false"}))
        assert created.returncode == 0, created.stdout[-5000:] + created.stderr[-2000:]
        bundle = state / "clusters" / NAME / "docker.env"
        listing = subprocess.run(["bash", "-c", f"source {bundle} && docker node ls --format '{{{{.Hostname}}}}'"],
                                 capture_output=True, text=True, timeout=120, check=False)
        assert sorted(listing.stdout.split()) == [f"{NAME}-manager-1", f"{NAME}-worker-1"], listing.stderr

        scaled = job(tmp_path, "scale", answers("scale", {"carina_name": NAME, "carina_home": str(state),
                                                          "carina_nodes": 2, "carina_state_from_store": "false"}))
        assert scaled.returncode == 0, scaled.stdout[-5000:] + scaled.stderr[-2000:]
        listing = subprocess.run(["bash", "-c", f"source {bundle} && docker node ls --format '{{{{.Status}}}}'"],
                                 capture_output=True, text=True, timeout=120, check=False)
        assert listing.stdout.split() == ["Ready"] * 3, listing.stdout + listing.stderr
    finally:
        deleted = job(tmp_path, "delete", answers("delete", {"carina_name": NAME, "carina_home": str(state),
                                                             "carina_state_from_store": "false"}))
    assert deleted.returncode == 0, deleted.stdout[-5000:] + deleted.stderr[-2000:]
    assert owned_objects(NAME) == {"containers": [], "volumes": [], "networks": []}
    assert not (state / "clusters" / NAME).exists()


def nodes(bundle: Path, field: str) -> list[str]:
    listing = subprocess.run(["bash", "-c", f"source {bundle} && docker node ls --format '{{{{.{field}}}}}'"],
                             capture_output=True, text=True, timeout=120, check=False)
    assert listing.returncode == 0, listing.stderr
    return listing.stdout.split()


def test_jobs_that_share_no_state_go_on_from_the_state_the_cluster_keeps(tmp_path):
    """Every job's state folder is empty at its start, as in AWX without a shared volume: scale, a repair (a
    create after a host was lost) and delete take the cluster's state (record, id, CA and SSH keys, known
    hosts) from its Docker volume."""
    homes = {name: tmp_path / f"home-{name}" for name in ("create", "refused", "scale", "delete")}
    volume = f"carina-state-{STATELESS}"
    try:
        created = job(tmp_path, "create", answers("create", {"carina_name": STATELESS,
                                                             "carina_home": str(homes["create"])}))
        assert created.returncode == 0, created.stdout[-5000:] + created.stderr[-2000:]
        stored = json.loads(subprocess.run(["docker", "volume", "inspect", volume], capture_output=True, text=True,
                                           check=True).stdout)[0]["Labels"]
        made_id = (homes["create"] / "clusters" / STATELESS / "id").read_text().strip()
        assert stored == {"carina.cluster": STATELESS, "carina.cluster-id": made_id, "carina.kind": "state"}

        # Told not to take the state from the cluster, a job with none finds no cluster, says how, changes nothing.
        refused = job(tmp_path, "scale", answers("scale", {"carina_name": STATELESS, "carina_nodes": 2,
                                                           "carina_home": str(homes["refused"]),
                                                           "carina_state_from_store": "false"}))
        assert refused.returncode != 0 and "carina_state_from_store=true" in refused.stdout, refused.stdout[-3000:]
        assert nodes(homes["create"] / "clusters" / STATELESS / "docker.env", "Hostname") == sorted(
            [f"{STATELESS}-manager-1", f"{STATELESS}-worker-1"])

        scaled = job(tmp_path, "scale", answers("scale", {"carina_name": STATELESS, "carina_nodes": 2,
                                                          "carina_home": str(homes["scale"])}))
        assert scaled.returncode == 0, scaled.stdout[-5000:] + scaled.stderr[-2000:]
        scaled_state = homes["scale"] / "clusters" / STATELESS
        assert (scaled_state / "id").read_text().strip() == made_id
        assert (scaled_state / "pki" / "ca-key.pem").read_bytes() == (
            homes["create"] / "clusters" / STATELESS / "pki" / "ca-key.pem").read_bytes()
        assert oct((scaled_state / "pki" / "ca-key.pem").stat().st_mode & 0o777) == "0o600"
        # The same CA: the bundle of the first job still reaches the cluster, which now has three Ready nodes.
        assert nodes(homes["create"] / "clusters" / STATELESS / "docker.env", "Status") == ["Ready"] * 3
        assert json.loads((scaled_state / "cluster.json").read_text())["nodes"] == 2

        # A host lost: a create job with no state re-creates it from the cluster's own state (a repair).
        lost = f"{STATELESS}-worker-2"
        subprocess.run(["docker", "rm", "-f", lost], capture_output=True, check=True)
        homes["repair"] = tmp_path / "home-repair"
        repaired = job(tmp_path, "create", answers("create", {"carina_name": STATELESS, "carina_nodes": 2,
                                                              "carina_home": str(homes["repair"])}))
        assert repaired.returncode == 0, repaired.stdout[-5000:] + repaired.stderr[-2000:]
        assert (homes["repair"] / "clusters" / STATELESS / "id").read_text().strip() == made_id
        assert nodes(homes["create"] / "clusters" / STATELESS / "docker.env", "Status") == ["Ready"] * 3
    finally:
        deleted = job(tmp_path, "delete", answers("delete", {"carina_name": STATELESS,
                                                             "carina_home": str(homes["delete"])}))
    assert deleted.returncode == 0, deleted.stdout[-5000:] + deleted.stderr[-2000:]
    assert owned_objects(STATELESS) == {"containers": [], "volumes": [], "networks": []}
    assert not (homes["delete"] / "clusters" / STATELESS).exists()
