"""The COE registry: plug-ins by name, everything but the health probe from the driver's contract."""

from __future__ import annotations

import re
import shutil
import types

import pytest

from carina import api, cli, coes, planning
from carina.coes import kubernetes, swarm
from carina.errors import CarinaError
from tests.helpers import ROOT

COLLECTION = ROOT / "collections" / "ansible_collections" / "rax" / "carina"
# The generic parts of carina: no COE's word, port or client may appear in them.
GENERIC = ("api.py", "cli.py", "store.py", "worker.py", "paths.py", "hygiene.py")
COE_WORDS = re.compile(r"(?<![a-z])(swarm|docker|manager|2376|kube[a-z]*|6443|10250|2379)", re.IGNORECASE)


def test_the_generic_parts_name_no_coe():
    found = []
    for name in GENERIC:
        path = ROOT / "src" / "carina" / name
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            found += [f"{name}:{lineno}: {m.group(0)}: {line.strip()}" for m in COE_WORDS.finditer(line)]
    assert not found, "COE words in generic files (move them to src/carina/coes/<coe>.py):\n" + "\n".join(found)


def test_the_word_check_catches_what_it_must():
    hits = [m.group(0) for m in COE_WORDS.finditer('DOCKER_HOST Swarm "manager" :2376 contextmanager '
                                                   'KUBECONFIG kubectl Kubernetes :6443 coe_kubernetes')]
    assert hits == ["DOCKER", "Swarm", "manager", "2376", "KUBECONFIG", "kubectl", "Kubernetes", "6443", "kubernetes"]


def test_the_registry_names_the_collections_coes():
    assert coes.names() == sorted(planning.contracts())
    assert "swarm" in coes.names()
    assert coes.default() == "swarm"
    assert isinstance(coes.get("swarm"), swarm.Swarm)
    assert coes.plugins()["swarm"] is swarm.Swarm
    assert "kubernetes" in coes.names()
    assert isinstance(coes.get("kubernetes"), kubernetes.Kubernetes)
    assert coes.plugins()["kubernetes"] is kubernetes.Kubernetes


def test_an_unknown_coe_is_refused_naming_the_choices():
    with pytest.raises(CarinaError, match=r"coe 'mesos' is not supported; choose one of: .*swarm"):
        coes.get("mesos")


@pytest.mark.parametrize(
    ("name", "want"),
    [
        ("swarm", {"url": "tcp://198.18.0.5:2376", "port": 2376, "secrets": ["key.pem"], "basename": "docker",
                   "env": ["DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"],
                   "words": ("manager", "managers", "worker", "workers")}),
        ("kubernetes", {"url": "https://198.18.0.5:6443", "port": 6443, "secrets": ["key.pem", "kubeconfig"],
                        "basename": "kube", "env": ["KUBECONFIG"], "words": ("master", "masters", "node", "nodes")}),
    ],
)
def test_a_coe_takes_its_url_bundle_and_shells_from_its_contract(name, want):
    coe = coes.get(name)
    contract = coe.contract
    assert coe.version == contract["version"] and coe.title == contract["title"]
    assert coe.api_url("198.18.0.5") == contract["api_url"].format(endpoint="198.18.0.5") == want["url"]
    assert coe.api_url("") == ""
    assert coe.api_port == want["port"]
    assert coe.bundle_files() == contract["credentials"]["files"]
    assert coe.secret_files() == want["secrets"]
    env, fish, ps1, cmd = (want["basename"] + suffix for suffix in (".env", ".fish", ".ps1", ".cmd"))
    assert coe.shells() == {"bash": env, "sh": env, "zsh": env, "fish": fish, "powershell": ps1, "cmd": cmd}
    assert coe.env_names() == want["env"]
    assert (coe.word("master"), coe.word("master", plural=True), coe.word("worker"), coe.word("worker", True)) == \
        want["words"]


@pytest.mark.parametrize("name", sorted(planning.contracts()))
def test_every_coe_keeps_the_private_files_of_its_bundle_private(name):
    """Whatever a contract lists: its secrets are bundle files, and carina copies them, and every *key* file, 0600."""
    coe = coes.get(name)
    listed = coe.contract["credentials"].get("secrets") or []
    assert isinstance(listed, list) and set(listed) <= set(coe.bundle_files()), "secrets must be files of the bundle"
    assert set(listed) <= set(coe.secret_files())
    assert {f for f in coe.bundle_files() if "key" in f.lower()} <= set(coe.secret_files()) <= set(coe.bundle_files())


def test_the_loader_uses_the_collections_own_planning_rules():
    spec = planning.spec()
    assert spec.__file__ == str(COLLECTION / "plugins" / "module_utils" / "spec.py")
    assert planning.providers() == tuple(spec.PROVIDERS)
    assert planning.spec() is spec  # loaded once


def cluster(**fields):
    return types.SimpleNamespace(**({"name": "c1", "endpoint": "198.18.7.2", "masters": 3, "nodes": 1} | fields))


def node(name, role="worker", state="ready", reach="reachable"):
    out = {"Description": {"Hostname": name}, "Status": {"State": state}, "Spec": {"Role": role}}
    if role == "manager":
        out["ManagerStatus"] = {"Reachability": reach}
    return out


@pytest.mark.parametrize(
    ("nodes", "status", "reason"),
    [
        ([node("m1", "manager"), node("m2", "manager"), node("m3", "manager"), node("w1")],
         "HEALTHY", "3 managers reachable, 4 nodes ready"),
        ([node("m1", "manager"), node("m2", "manager", reach="unreachable"), node("m3", "manager"),
          node("w1", state="down")], "UNHEALTHY", "nodes not ready: w1; managers unreachable: m2"),
        ([node("m1", "manager"), node("w1")], "UNHEALTHY", "1 managers and 1 workers in the swarm, 3 and 1 expected"),
    ],
)
def test_the_swarm_health_probe(monkeypatch, tmp_path, nodes, status, reason):
    calls = []
    monkeypatch.setattr(swarm, "docker_api", lambda *args: calls.append(args) or nodes)
    health = coes.get("swarm").health(cluster(), tmp_path)
    assert (health.status, health.reason) == (status, reason)
    assert calls == [(tmp_path, "198.18.7.2", 2376, "/nodes")]


def test_the_swarm_health_probe_names_the_url_that_does_not_answer(tmp_path):
    health = coes.get("swarm").health(cluster(), tmp_path)  # no bundle: the TLS context cannot be made
    assert health.status == "UNHEALTHY"
    assert health.reason.startswith("the endpoint tcp://198.18.7.2:2376 does not answer:")


FAKE_CONTRACT = """
name: fake
version: 3
title: A COE of the tests
roles: {master: {word: brain, plural: brains}, worker: {word: limb, plural: limbs}}
masters: {min: 1, max: 5, odd: false, default: 2}
workers: {min: 0, max: 10, default: 0}
runtime: none
ports: [{port: 6443, protocol: tcp, roles: [master], from: clients, purpose: API}]
listeners: [{name: api, port: 6443, protocol: tcp, check: {type: tcp}}]
pki: {cas: [ca], clients: []}
credentials:
  client: admin
  basename: fakecfg
  env: {FAKE_URL: "https://{endpoint}:6443"}
  files: [ca.crt, admin.key, fakecfg.env, fakecfg.fish]
api_url: "https://{endpoint}:6443"
operations: [create, delete]
options:
  fast: {type: bool, default: false}
  size: {type: int, default: 3, min: 1, max: 9}
  net: {type: cidr, default: 198.19.0.0/16}
  label: {type: str, default: ""}
"""


@pytest.fixture
def fake_collection(tmp_path, monkeypatch):
    """A copy of the collection's planning code and contracts, with one more COE driver and no plug-in for it."""
    root = tmp_path / "collections" / "ansible_collections" / "rax" / "carina"
    shutil.copytree(COLLECTION / "plugins" / "module_utils", root / "plugins" / "module_utils")
    for contract in COLLECTION.glob("roles/coe_*/meta/contract.yml"):
        dest = root / contract.relative_to(COLLECTION)
        dest.parent.mkdir(parents=True)
        shutil.copyfile(contract, dest)
    (root / "roles" / "coe_fake" / "meta").mkdir(parents=True)
    (root / "roles" / "coe_fake" / "meta" / "contract.yml").write_text(FAKE_CONTRACT)
    monkeypatch.setenv("CARINA_COLLECTIONS_PATH", str(tmp_path / "collections"))
    monkeypatch.setenv("CARINA_HOME", str(tmp_path / "home"))
    return root


def test_a_coe_with_a_contract_and_no_plugin_works_from_its_contract(fake_collection, tmp_path):
    assert planning.collection_root() == fake_collection.resolve()
    assert coes.names() == sorted([*planning.contracts()])
    assert "fake" in coes.names() and coes.default() == "swarm"
    coe = coes.get("fake")
    assert type(coe) is coes.Coe and coe.name == "fake" and coe.version == 3
    assert coe.api_url("198.18.1.1") == "https://198.18.1.1:6443" and coe.api_port == 6443
    assert coe.shells() == {"bash": "fakecfg.env", "sh": "fakecfg.env", "zsh": "fakecfg.env", "fish": "fakecfg.fish"}
    assert coe.secret_files() == ["admin.key"]
    assert coe.health(cluster(), tmp_path).status == "UNKNOWN"


def test_the_generic_client_drives_a_new_coe_by_its_contract(fake_collection, tmp_path, monkeypatch):
    monkeypatch.setattr(api.Client, "_spawn", lambda self, run: None)
    client = api.Client(tmp_path / "home")
    with pytest.raises(CarinaError, match="masters=6: the number of brains must be from 1 to 5"):
        client.create("f1", coe="fake", masters=6)
    cluster_, _run = client.create("f1", coe="fake")
    assert (cluster_.coe, cluster_.masters, cluster_.nodes, cluster_.contract_version) == ("fake", 2, 0, 3)
    client.store.update_cluster("f1", status="CREATE_COMPLETE", endpoint="198.18.1.1")
    assert client.get("f1").api_url == "https://198.18.1.1:6443"
    with pytest.raises(CarinaError, match="scale is not supported by coe fake"):
        client.resize("f1", nodes=1)  # at once, before its record is looked for
    state = tmp_path / "home" / "clusters" / "f1"
    state.mkdir(parents=True)
    for item in ("ca.crt", "admin.key", "fakecfg.env", "fakecfg.fish"):
        (state / item).write_text(f"{item} {state}\n")
    assert client.env("f1", "fish") == f"fakecfg.fish {state}\n"
    with pytest.raises(CarinaError, match="shell 'cmd': choose one of bash, fish, sh, zsh"):
        client.env("f1", "cmd")
    assert client.health("f1").status == "UNKNOWN"
    assert cli.main(["create", "f2", "--coe", "fake", "--masters", "3"]) == 0


def test_options_given_as_text_are_typed_by_the_contract(fake_collection, tmp_path, monkeypatch, capsys):
    coe = coes.get("fake")
    assert coe.options() == coe.contract["options"]
    assert coe.option_values({"fast": "Yes", "size": " 7 ", "net": "198.19.64.0/18", "label": "007", "other": "1"}) == \
        {"fast": True, "size": 7, "net": "198.19.64.0/18", "label": "007", "other": "1"}
    assert coe.option_values({"fast": "0", "size": 5}) == {"fast": False, "size": 5}  # typed values stay
    assert coe.option_values({"fast": "maybe", "size": "x"}) == {"fast": "maybe", "size": "x"}  # the rules refuse
    monkeypatch.setattr(api.Client, "_spawn", lambda self, run: None)
    assert cli.main(["create", "f3", "--coe", "fake", "-O", "fast=maybe", "-O", "size=x"]) == 1
    assert capsys.readouterr().err == ("carina: option fast must be true or false, not 'maybe'; "
                                       "option size must be a whole number from 1 to 9, not 'x'\n")
    assert cli.main(["create", "f3", "--coe", "fake", "-O", "fast=no", "-O", "size=5", "-O", "label=a=b"]) == 0
    assert api.Client(tmp_path / "home").get("f3").coe_options == {"fast": False, "size": 5, "label": "a=b"}
    capsys.readouterr()
    assert cli.main(["get", "f3"]) == 0
    assert "coe_options:   fast=false, label=a=b, size=5\n" in capsys.readouterr().out
