"""The site playbooks run as AWX runs a job template: ansible-runner with a fresh private data folder per
job, the survey's answers (its defaults plus what the user typed, checked against the survey spec) as
extra vars, the project folder as the working folder, a fresh home, no Ansible settings from the caller.
Create, scale and delete follow each other as three jobs; the state lives in the survey's state folder
(in AWX, a volume every job mounts)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.helpers import ROOT, bare_env, owned_objects

NAME = "it-awx"
CLUSTERS = (NAME,)
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


def job(tmp_path: Path, name: str, extravars: dict) -> subprocess.CompletedProcess:
    data = tmp_path / f"job-{name}"
    (data / "env").mkdir(parents=True)
    (data / "env" / "extravars").write_text(json.dumps(extravars))
    # A fresh home, short as an execution environment's (SSH's control sockets live under it).
    home = tempfile.mkdtemp(prefix="awx-")
    env = bare_env(HOME=home)
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
        created = job(tmp_path, "create", answers("create", {"carina_name": NAME, "carina_home": str(state)}))
        assert created.returncode == 0, created.stdout[-5000:] + created.stderr[-2000:]
        bundle = state / "clusters" / NAME / "docker.env"
        listing = subprocess.run(["bash", "-c", f"source {bundle} && docker node ls --format '{{{{.Hostname}}}}'"],
                                 capture_output=True, text=True, timeout=120, check=False)
        assert sorted(listing.stdout.split()) == [f"{NAME}-manager-1", f"{NAME}-worker-1"], listing.stderr

        scaled = job(tmp_path, "scale", answers("scale", {"carina_name": NAME, "carina_home": str(state),
                                                          "carina_nodes": 2}))
        assert scaled.returncode == 0, scaled.stdout[-5000:] + scaled.stderr[-2000:]
        listing = subprocess.run(["bash", "-c", f"source {bundle} && docker node ls --format '{{{{.Status}}}}'"],
                                 capture_output=True, text=True, timeout=120, check=False)
        assert listing.stdout.split() == ["Ready"] * 3, listing.stdout + listing.stderr
    finally:
        deleted = job(tmp_path, "delete", answers("delete", {"carina_name": NAME, "carina_home": str(state)}))
    assert deleted.returncode == 0, deleted.stdout[-5000:] + deleted.stderr[-2000:]
    assert owned_objects(NAME) == {"containers": [], "volumes": [], "networks": []}
    assert not (state / "clusters" / NAME).exists()
