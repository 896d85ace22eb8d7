"""The carina package without Ansible runs: store, validation, reconciliation, worker helpers, CLI."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from carina import api, cli, coes, hygiene, paths, worker
from carina.errors import CarinaError
from carina.store import MIGRATIONS, SCHEMA_VERSION, Cluster, Conflict, Run, Store, StoreError


@pytest.fixture
def client(tmp_path, monkeypatch):
    monkeypatch.setenv("CARINA_HOME", str(tmp_path))
    spawned = []
    # Unit tests never start playbooks: record what would be spawned instead.
    monkeypatch.setattr(api.Client, "_spawn", lambda self, run: spawned.append(run))
    c = api.Client(tmp_path)
    c.spawned = spawned
    return c


def write_record(home, name, masters=1, nodes=1, **fields):
    """The cluster record a create run writes (schema v1), for actions that read it."""
    record = {"schema_version": 1, "name": name, "coe": "swarm", "contract_version": 1, "provider": "local",
              "masters": masters, "nodes": nodes,
              "master_hosts": [f"{name}-manager-{i}" for i in range(1, masters + 1)],
              "worker_hosts": [f"{name}-worker-{i}" for i in range(1, nodes + 1)],
              "removing_masters": [], "removing_workers": [], "subnet": "198.18.7.0/24", "endpoint": "198.18.7.2",
              "api_url": "tcp://198.18.7.2:2376", "lb": f"{name}-lb", "extra_sans": [], "openstack": {},
              "static": {}} | fields
    state = home / "clusters" / name
    state.mkdir(parents=True, exist_ok=True)
    (state / "cluster.json").write_text(json.dumps(record))
    return record


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "Bad"}, "name 'Bad'"),
        ({"name": "a--b"}, "single '-'"),
        ({"masters": 2}, "masters=2: the number of managers must be odd"),
        ({"masters": 0}, "masters=0"),
        ({"masters": 9}, "from 1 to 7"),
        ({"nodes": -1}, "nodes=-1"),
        ({"coe": "mesos"}, "coe 'mesos' is not supported"),
        ({"provider": "aws"}, "provider 'aws' is not supported"),
    ],
)
def test_bad_specs_are_refused_at_once(client, kwargs, message):
    args = {"name": "ok", "coe": "swarm", "masters": 1, "nodes": 1, "provider": "local"} | kwargs
    name = args.pop("name")
    with pytest.raises(api.CarinaError, match=message):
        client.create(name, **args)
    assert client.list() == []
    assert client.spawned == []
    assert client.runs() == []
    assert not (client.home / "clusters").exists() and not (client.home / "runs").exists()


def test_create_records_in_progress_and_refuses_a_second(client):
    cluster, run = client.create("c1", masters=3, nodes=2)
    assert cluster.status == "CREATE_IN_PROGRESS"
    assert run.action == "create" and run.status == "pending"
    params = json.loads(client.store.get_run(run.id).params)
    assert params["playbook"] == "rax.carina.create"
    assert params["extravars"]["carina_masters"] == 3
    assert params["extravars"]["carina_home"] == str(client.home)
    with pytest.raises(Conflict, match="already exists"):
        client.create("c1")


def test_a_create_runs_within_its_timeout(client):
    """A create's run may take RUN_TIMEOUT seconds, or what the caller says (Magnum's create_timeout)."""
    _cluster, run = client.create("c1")
    assert json.loads(client.store.get_run(run.id).params)["timeout"] == api.RUN_TIMEOUT == 3600
    _cluster, run = client.create("c2", timeout=300)
    assert json.loads(client.store.get_run(run.id).params)["timeout"] == 300
    for bad in (0, -5, 2.5, True, "60"):
        with pytest.raises(api.CarinaError, match=r"timeout .*: seconds, a whole number of 1 or more"):
            client.create("c3", timeout=bad)
    assert client.store.get_cluster("c3") is None


def test_a_cluster_has_one_id_from_its_create_on(client):
    """The id is chosen when the create is accepted, passed to the playbook (which keeps it in the state
    folder and on every host), kept by a retry, named by the delete, and finds the cluster."""
    cluster, run = client.create("c1")
    assert re.fullmatch(r"[0-9a-f]{32}", cluster.uuid)
    assert json.loads(client.store.get_run(run.id).params)["extravars"]["carina_cluster_id"] == cluster.uuid
    dashed = f"{cluster.uuid[:8]}-{cluster.uuid[8:12]}-{cluster.uuid[12:16]}-{cluster.uuid[16:20]}-{cluster.uuid[20:]}"
    assert client.find(dashed.upper()).name == "c1" and client.find(cluster.uuid).name == "c1"
    client.store.update_cluster("c1", status="CREATE_FAILED")
    again, run = client.create("c1")
    assert again.uuid == cluster.uuid
    assert json.loads(client.store.get_run(run.id).params)["extravars"]["carina_cluster_id"] == cluster.uuid
    client.store.update_cluster("c1", status="CREATE_COMPLETE")
    _cluster, run = client.delete("c1")
    assert json.loads(client.store.get_run(run.id).params)["extravars"]["carina_cluster_id"] == cluster.uuid
    with pytest.raises(CarinaError, match="cluster 0123 not found"):
        client.find("0123")
    with pytest.raises(CarinaError, match="32 hexadecimal digits"):
        client.create("c2", cluster_id="not-an-id")
    given = "ab" * 16
    assert client.create("c3", cluster_id=given, project="p1", extra={"keypair": "k"})[0].uuid == given
    assert client.find(given).project == "p1" and client.find(given).extra == {"keypair": "k"}


def test_a_cluster_recorded_without_an_id_takes_its_state_folders(client):
    """Clusters recorded before the store kept ids (or made by a playbook run) show the id of their state."""
    client.create("old")
    client.store.update_cluster("old", uuid="", status="CREATE_COMPLETE")
    (client.home / "clusters" / "old").mkdir(parents=True)
    (client.home / "clusters" / "old" / "id").write_text("cd" * 16 + "\n")
    assert client.get("old").uuid == "cd" * 16
    assert client.find("cd" * 16).name == "old"


def _create_in(home, name, queue):
    os.environ["CARINA_HOME"] = home
    c = api.Client(home)
    c._spawn = lambda run: None
    try:
        c.create(name)
        queue.put("created")
    except Conflict as exc:
        queue.put(f"refused: {exc}")


def test_concurrent_creates_in_processes_yield_one(tmp_path):
    Store(tmp_path)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_create_in, args=(str(tmp_path), "race", queue)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    results = sorted(queue.get(timeout=5) for _ in procs)
    assert results.count("created") == 1, results
    assert len(Store(tmp_path).list_runs("race")) == 1


def test_a_dead_worker_fails_the_cluster_with_a_reason(client):
    _cluster, run = client.create("c1")
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    client.store.update_run(run.id, pid=proc.pid, pid_start="12345")
    cluster = client.get("c1")
    assert cluster.status == "CREATE_FAILED"
    assert f"run {run.id} stopped without a result" in cluster.status_reason
    assert client.store.get_run(run.id).status == "crashed"


def test_a_live_worker_keeps_the_cluster_in_progress(client):
    _cluster, run = client.create("c1")
    client.store.update_run(run.id, pid=os.getpid(), pid_start=api.process_start(os.getpid()))
    assert client.get("c1").status == "CREATE_IN_PROGRESS"
    with pytest.raises(Conflict, match="CREATE_IN_PROGRESS"):
        client.delete("c1")


def test_retry_of_a_failed_create_needs_the_same_spec(client):
    client.create("c1", masters=3, nodes=1)
    client.store.update_cluster("c1", status="CREATE_FAILED", status_reason="boom")
    with pytest.raises(Conflict, match="retry with the same spec"):
        client.create("c1", masters=1, nodes=1)
    cluster, _run = client.create("c1", masters=3, nodes=1)
    assert cluster.status == "CREATE_IN_PROGRESS"


def test_grow_and_resize_build_scale_runs(client):
    client.create("c1", nodes=1)
    client.store.update_cluster("c1", status="CREATE_COMPLETE")
    write_record(client.home, "c1", masters=1, nodes=1)
    _cluster, run = client.grow("c1", 2)
    assert json.loads(client.store.get_run(run.id).params)["extravars"]["carina_nodes"] == 3
    client.store.update_run(run.id, status="successful")
    client.store.update_cluster("c1", status="UPDATE_COMPLETE")
    _cluster, run = client.resize("c1", nodes=0, remove=["c1-worker-1"])
    extravars = json.loads(client.store.get_run(run.id).params)["extravars"]
    assert extravars["carina_nodes"] == 0 and extravars["carina_remove_nodes"] == ["c1-worker-1"]
    with pytest.raises(api.CarinaError, match="grow adds 1 or more"):
        client.grow("c1", 0)


def test_repair_reconverges_the_recorded_spec_and_refuses_what_it_cannot_repair(client, capsys):
    client.create("c1", masters=3, nodes=1)
    with pytest.raises(Conflict, match="CREATE_IN_PROGRESS"):
        client.repair("c1")
    client.store.update_cluster("c1", status="CREATE_FAILED")
    with pytest.raises(Conflict, match="failed to create"):
        client.repair("c1")
    client.store.update_cluster("c1", status="CREATE_COMPLETE")
    write_record(client.home, "c1", masters=3, nodes=1)
    cluster, run = client.repair("c1")
    assert (cluster.status, run.action) == ("UPDATE_IN_PROGRESS", "repair")
    params = json.loads(client.store.get_run(run.id).params)
    assert params["playbook"] == "rax.carina.scale"
    assert "carina_nodes" not in params["extravars"] and "carina_masters" not in params["extravars"]
    assert cli.main(["repair", "nope"]) == 1
    assert capsys.readouterr().err.strip() == "carina: cluster nope not found; `carina ls` lists the clusters"


def test_run_envvars_hold_no_secret(client, monkeypatch):
    monkeypatch.setenv("OS_PASSWORD", "s3cret-value")
    _cluster, run = client.create("c1")
    assert "s3cret-value" not in client.store.get_run(run.id).params


def test_recorder_keeps_the_first_real_failure(tmp_path):
    store = Store(tmp_path)
    rec = worker.Recorder(store, "r1")
    assert rec({"event": "runner_on_failed", "counter": 1,
                "event_data": {"task": "t0", "host": "h", "ignore_errors": True, "res": {"msg": "ignored"}}})
    assert rec({"event": "runner_on_failed", "counter": 2,
                "event_data": {"task": "Start", "host": "h1", "res": {"msg": "no room"}}, "stdout": "fatal"})
    assert rec({"event": "runner_on_failed", "counter": 3, "event_data": {"task": "Later", "host": "h2", "res": {}}})
    assert rec.reason() == "task 'Start' failed on h1: no room"
    assert [e["counter"] for e in store.events("r1")] == [1, 2, 3]


def test_a_failed_loop_is_told_by_its_first_failed_item(tmp_path):
    rec = worker.Recorder(Store(tmp_path), "r1")
    res = {"msg": "One or more items failed", "results": [
        {"item": "a", "changed": False}, {"item": "b", "failed": True, "msg": "Flavor's memory is too small"},
        {"item": "c", "failed": True, "msg": "later"}]}
    rec({"event": "runner_on_failed", "counter": 1, "event_data": {"task": "Make", "host": "localhost", "res": res}})
    assert rec.reason() == "task 'Make' failed on localhost: Flavor's memory is too small"
    # As ansible-runner tells it: each failed item in its own event, then the task with no results.
    rec = worker.Recorder(Store(tmp_path / "other"), "r2")
    for counter, msg in enumerate(("400 Flavor's memory is too small", "the second item")):
        rec({"event": "runner_item_on_failed", "counter": counter,
             "event_data": {"task": "Make", "host": "localhost", "res": {"msg": msg}}})
    rec({"event": "runner_on_failed", "counter": 9,
         "event_data": {"task": "Make", "host": "localhost", "res": {"msg": "One or more items failed"}}})
    assert rec.reason() == "task 'Make' failed on localhost: 400 Flavor's memory is too small"


def test_scrub_keeps_only_environment_names(tmp_path):
    command = tmp_path / "artifacts" / "run" / "command"
    command.parent.mkdir(parents=True)
    command.write_text(json.dumps({"command": ["ansible-playbook"], "env": {"OS_PASSWORD": "x", "PATH": "/bin"}}))
    (tmp_path / "env").mkdir()
    (tmp_path / "env" / "envvars").write_text("OS_PASSWORD: x\nPATH: /bin\n")
    hygiene.scrub_artifacts(tmp_path)
    assert json.loads(command.read_text())["env"] == ["OS_PASSWORD", "PATH"]
    assert command.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "env" / "envvars").read_text() == "PATH: /bin\n"


def test_finish_moves_the_cluster_and_reads_the_record(tmp_path):
    store = Store(tmp_path)
    with store.transaction() as db:
        store.put_cluster(db, Cluster(name="c1", status="UPDATE_IN_PROGRESS", coe="swarm", provider="local",
                                      masters=1, nodes=1, current_run="r1"))
        store.add_run(db, Run(id="r1", cluster="c1", action="scale", status="running"))
    state = tmp_path / "clusters" / "c1"
    state.mkdir(parents=True)
    (state / "cluster.json").write_text(json.dumps({"masters": 3, "nodes": 4, "endpoint": "198.18.9.9"}))
    worker.finish(store, "r1", "successful", 0, "")
    cluster = store.get_cluster("c1")
    assert (cluster.status, cluster.masters, cluster.nodes, cluster.endpoint) == ("UPDATE_COMPLETE", 3, 4, "198.18.9.9")
    assert store.get_run("r1").status == "successful"


def test_cli_exit_codes_and_one_line_errors(client, capsys):
    assert cli.main(["create", "Bad_Name"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("carina: name 'Bad_Name'")
    assert cli.main(["get", "nope"]) == 1
    assert "cluster nope not found" in capsys.readouterr().err
    assert cli.main(["create", "c1", "-o", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["cluster"]["status"] == "CREATE_IN_PROGRESS"
    assert cli.main(["ls"]) == 0
    assert "c1" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        cli.main(["resize"])
    assert exc.value.code == 2


def test_progress_without_a_terminal_prints_plain_task_lines(client, tmp_path):
    _cluster, run = client.create("c1")
    client.store.add_event(run.id, counter=1, event="playbook_on_task_start", task="Make the hosts", host="",
                           stdout="")
    client.store.add_event(run.id, counter=2, event="runner_on_ok", task="Make the hosts", host="localhost",
                           stdout="changed: [localhost]")

    class Plain:
        def __init__(self):
            self.lines: list[str] = []

        def isatty(self):
            return False

        def write(self, text):
            self.lines.append(text)

        def flush(self):
            pass

    stream = Plain()
    progress = cli.Progress(client, run, stream=stream)
    progress.poll()
    assert any("TASK Make the hosts" in line for line in stream.lines)
    assert progress.counts["changed"] == 1
    assert time.time() - progress.started < 5


def test_stop_run_processes_ends_every_process_naming_the_run(tmp_path):
    run_dir = tmp_path / "runs" / "abc"
    run_dir.mkdir(parents=True)
    procs = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", str(run_dir)]) for _ in range(2)]
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert sorted(hygiene.run_processes(run_dir)) == sorted(p.pid for p in procs)
        hygiene.stop_run_processes(run_dir, grace=2)
        for p in procs:
            assert p.wait(timeout=5) is not None
        assert hygiene.run_processes(run_dir) == []
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_openstack_options_become_extravars(client):
    _cluster, run = client.create("os1", provider="openstack", masters=3, nodes=2,
                                  openstack={"cloud": "devstack", "server_type": "bm", "floating_ip_enabled": True})
    extravars = json.loads(client.store.get_run(run.id).params)["extravars"]
    assert extravars["carina_provider"] == "openstack"
    assert extravars["carina_cloud"] == "devstack" and extravars["carina_server_type"] == "bm"
    assert extravars["carina_floating_ip_enabled"] is True
    _cluster, run = client.create("os4", provider="openstack", openstack={"ssh_cidr": "198.19.250.0/24"})
    assert json.loads(client.store.get_run(run.id).params)["extravars"]["carina_ssh_cidr"] == "198.19.250.0/24"
    with pytest.raises(api.CarinaError, match="ssh_cidr 'anywhere': give an IPv4 network"):
        client.create("os5", provider="openstack", openstack={"ssh_cidr": "anywhere"})
    _cluster, run = client.create("os6", provider="openstack", openstack={"api_cidrs": ["198.19.250.0/24"]})
    assert json.loads(client.store.get_run(run.id).params)["extravars"]["carina_api_cidrs"] == ["198.19.250.0/24"]
    with pytest.raises(api.CarinaError, match=re.escape("api_cidrs '198.19.250.1/24': give an IPv4 network")):
        client.create("os7", provider="openstack", openstack={"api_cidrs": ["198.19.250.1/24"]})
    with pytest.raises(api.CarinaError, match="choose vm"):
        client.create("os2", provider="openstack", openstack={"server_type": "metal"})
    with pytest.raises(api.CarinaError, match="need --provider openstack"):
        client.create("os3", openstack={"cloud": "devstack"})


def test_run_folders_are_rotated(client):
    client.create("c1")
    client.store.update_cluster("c1", status="CREATE_COMPLETE")
    runs = client.store.list_runs("c1")
    client.store.update_run(runs[0].id, status="successful", started_at=time.time() - 60)
    for i in range(api.KEEP_RUNS + 2):
        with client.store.transaction() as db:
            run = Run(id=f"old{i:02d}", cluster="c1", action="scale", status="successful",
                      data_dir=str(client.home / "runs" / f"old{i:02d}"), started_at=time.time() + i)
            client.store.add_run(db, run)
        (client.home / "runs" / run.id).mkdir(parents=True)
        (client.home / "runs" / run.id / "artifacts").mkdir()
    client._rotate("c1")
    kept = [r for r in client.store.list_runs("c1") if r.data_dir]
    assert len(kept) == api.KEEP_RUNS
    assert [r.id for r in kept] == [f"old{i:02d}" for i in range(2, api.KEEP_RUNS + 2)]
    assert client.store.get_run(runs[0].id).data_dir == ""
    assert not (client.home / "runs" / "old00").exists() and (client.home / "runs" / "old11").exists()
    assert len(client.store.list_runs("c1")) == len(runs) + api.KEEP_RUNS + 2  # the records stay


# -- validation by the collection's planning rules ------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"masters": 4}, r"masters=4: .* \(use 3 or 5\)"),
        ({"subnet": "198.18.9.0/30"}, "subnet 198.18.9.0/30 has room for 1 hosts, the cluster needs 3"),
        ({"subnet": "nonsense"}, "subnet 'nonsense' is not an IPv4 network"),
        ({"extra_sans": ["bad name!"]}, "extra SAN 'bad name!' is neither"),
        ({"name": "ok-", "masters": 2}, "name 'ok-'.*; masters=2"),
    ],
)
def test_the_collection_rules_judge_a_spec_before_anything_is_recorded(client, kwargs, message):
    args = {"name": "ok"} | kwargs
    with pytest.raises(api.CarinaError, match=message):
        client.create(args.pop("name"), **args)
    assert client.list() == [] and client.runs() == [] and client.spawned == []
    assert not (client.home / "clusters").exists() and not (client.home / "runs").exists()


def test_counts_left_out_come_from_the_contract(client):
    cluster, run = client.create("c1")
    assert (cluster.masters, cluster.nodes, cluster.contract_version) == (1, 1, 1)
    extravars = json.loads(client.store.get_run(run.id).params)["extravars"]
    assert (extravars["carina_coe"], extravars["carina_masters"], extravars["carina_nodes"]) == ("swarm", 1, 1)


def test_a_create_is_judged_against_the_record_a_failed_one_left(client):
    write_record(client.home, "c1", masters=3, nodes=1)
    with pytest.raises(api.CarinaError, match=r"already exists with another spec \(masters 3 -> 1\)"):
        client.create("c1", masters=1)
    assert client.list() == []


def test_resize_follows_the_contract_and_the_record(client):
    client.create("c1", masters=1, nodes=2)
    client.store.update_cluster("c1", status="CREATE_COMPLETE")
    with pytest.raises(api.CarinaError, match="has no record"):
        client.resize("c1", nodes=1)
    write_record(client.home, "c1", masters=1, nodes=2)
    with pytest.raises(api.CarinaError, match="masters=2: the number of managers must be odd"):
        client.resize("c1", masters=2)
    with pytest.raises(api.CarinaError, match=r"masters=9: .*from 1 to 7"):
        client.resize("c1", masters=9)
    with pytest.raises(api.CarinaError, match="nodes=-1"):
        client.resize("c1", nodes=-1)
    with pytest.raises(api.CarinaError, match=r"cannot remove c1-worker-7: not workers of cluster c1"):
        client.resize("c1", nodes=1, remove=["c1-worker-7"])
    with pytest.raises(api.CarinaError, match="masters are removed by lowering their count"):
        client.resize("c1", remove=["c1-manager-1"])
    assert len(client.runs("c1")) == 1 and client.get("c1").status == "CREATE_COMPLETE"
    _cluster, run = client.resize("c1", masters=3, remove=["c1-worker-2"])
    extravars = json.loads(client.store.get_run(run.id).params)["extravars"]
    assert extravars["carina_masters"] == 3 and "carina_nodes" not in extravars


def test_a_cluster_with_a_broken_record_can_still_be_deleted(client):
    client.create("c1")
    client.store.update_cluster("c1", status="CREATE_FAILED")
    (client.home / "clusters" / "c1").mkdir(parents=True)
    (client.home / "clusters" / "c1" / "cluster.json").write_text("{not json")
    with pytest.raises(api.CarinaError, match=r"the cluster record .*cluster\.json: Expecting property name"):
        client.create("c1")
    cluster, run = client.delete("c1")
    assert cluster.status == "DELETE_IN_PROGRESS" and run.action == "delete"


def test_a_create_stopped_before_its_record_is_deleted_on_its_own_provider(client):
    """A create canceled before its run wrote cluster.json: the delete run gets the provider and the cloud from
    carina's own record (the playbook would otherwise look for the cluster's objects with the default provider)."""
    client.create("os1", provider="openstack", openstack={"cloud": "devstack", "fixed_network": "private"})
    client.store.update_cluster("os1", status="CREATE_FAILED")
    _cluster, run = client.delete("os1")
    extravars = json.loads(client.store.get_run(run.id).params)["extravars"]
    assert (extravars["carina_provider"], extravars["carina_cloud"], extravars["carina_fixed_network"]) == (
        "openstack", "devstack", "private")
    client.create("os2", provider="openstack", openstack={"cloud": "devstack"})
    client.store.update_cluster("os2", status="CREATE_FAILED")
    write_record(client.home, "os2", provider="openstack")
    _cluster, run = client.delete("os2")
    extravars = json.loads(client.store.get_run(run.id).params)["extravars"]
    assert "carina_provider" not in extravars and "carina_cloud" not in extravars  # the record tells


def test_a_failed_create_cannot_be_resized(client):
    client.create("c1")
    client.store.update_cluster("c1", status="CREATE_FAILED")
    write_record(client.home, "c1")
    with pytest.raises(Conflict, match="failed to create"):
        client.resize("c1", nodes=2)


# -- provider static --------------------------------------------------------------------------------
@pytest.fixture
def inventory(tmp_path):
    path = tmp_path / "hosts.ini"
    path.write_text("[masters]\nm1 ansible_host=198.18.30.1\n\n[workers]\nw1 ansible_host=198.18.30.2\n"
                    "w2 ansible_host=198.18.30.3\n\n[lb]\nlb1 ansible_host=198.18.30.4\n")
    return path


def test_static_needs_an_inventory_that_exists(client, tmp_path):
    with pytest.raises(api.CarinaError, match="provider static needs --inventory PATH"):
        client.create("s1", provider="static")
    with pytest.raises(api.CarinaError, match="no such file"):
        client.create("s1", provider="static", inventory=tmp_path / "missing.ini")
    (tmp_path / "broken.ini").write_text("[masters\nnot an inventory [[[\n")
    with pytest.raises(api.CarinaError, match="could not be read"):
        client.create("s1", provider="static", inventory=tmp_path / "broken.ini")
    (tmp_path / "empty.ini").write_text("[workers]\nw1\n")
    with pytest.raises(api.CarinaError, match="no host in group masters"):
        client.create("s1", provider="static", inventory=tmp_path / "empty.ini")
    with pytest.raises(api.CarinaError, match="an inventory is for --provider static"):
        client.create("s1", inventory=tmp_path / "empty.ini")
    assert client.list() == [] and client.runs() == []


def test_static_hosts_come_from_the_inventory_and_every_run_reuses_it(client, inventory):
    with pytest.raises(api.CarinaError, match=r"nodes=5 \(the inventory has 2\)"):
        client.create("s1", provider="static", inventory=inventory, nodes=5)
    cluster, run = client.create("s1", provider="static", inventory=inventory)
    assert (cluster.provider, cluster.masters, cluster.nodes) == ("static", 1, 2)
    assert cluster.options == {"inventory": str(inventory)}
    params = json.loads(client.store.get_run(run.id).params)
    assert params["inventory"] == [str(inventory)]
    assert params["extravars"]["carina_provider"] == "static"
    client.store.update_cluster("s1", status="CREATE_COMPLETE")
    write_record(client.home, "s1", provider="static", master_hosts=["m1"], worker_hosts=["w1", "w2"],
                 static={"inventory": str(inventory)})
    inventory.write_text(inventory.read_text().replace("w2 ansible_host=198.18.30.3\n",
                                                       "w2 ansible_host=198.18.30.3\nw3 ansible_host=198.18.30.5\n"))
    _cluster, run = client.resize("s1")
    assert json.loads(client.store.get_run(run.id).params)["inventory"] == [str(inventory)]
    client.store.update_run(run.id, status="successful")
    client.store.update_cluster("s1", status="UPDATE_COMPLETE")
    _cluster, run = client.delete("s1")
    assert json.loads(client.store.get_run(run.id).params)["inventory"] == [str(inventory)]


def test_static_hosts_reads_groups_and_their_children(tmp_path):
    path = tmp_path / "hosts.yml"
    path.write_text("all:\n  children:\n    masters:\n      hosts: {m1: {}, m2: {}, m3: {}}\n"
                    "    workers:\n      children:\n        rack1:\n          hosts: {w1: {}}\n"
                    "        rack2:\n          hosts: {w2: {}}\n")
    assert api.static_hosts(path) == {"master": ["m1", "m2", "m3"], "worker": ["w1", "w2"], "lb": [], "vip": ""}


def test_static_without_a_load_balancer_is_refused_and_a_vip_is_read(client, tmp_path):
    path = tmp_path / "hosts.yml"
    path.write_text("all:\n  children:\n    masters:\n      hosts: {m1: {ansible_host: 198.18.30.1}}\n")
    with pytest.raises(api.CarinaError, match="static hosts need a load balancer"):
        client.create("s2", provider="static", inventory=path)
    assert client.list() == []
    path.write_text("all:\n  vars: {carina_vip: 198.18.30.9}\n"
                    "  children:\n    masters:\n      hosts: {m1: {ansible_host: 198.18.30.1}}\n")
    assert api.static_hosts(path)["vip"] == "198.18.30.9"
    cluster, _run = client.create("s2", provider="static", inventory=path)
    assert (cluster.masters, cluster.nodes) == (1, 0)


# -- store migrations -------------------------------------------------------------------------------
# The schema of the first release (no user_version), as its Store created it.
SCHEMA_V0 = """
CREATE TABLE clusters (name TEXT PRIMARY KEY, status TEXT NOT NULL, status_reason TEXT NOT NULL DEFAULT '',
    coe TEXT NOT NULL, provider TEXT NOT NULL, masters INTEGER NOT NULL, nodes INTEGER NOT NULL,
    subnet TEXT NOT NULL DEFAULT '', endpoint TEXT NOT NULL DEFAULT '', current_run TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE runs (id TEXT PRIMARY KEY, cluster TEXT NOT NULL, action TEXT NOT NULL, status TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '', params TEXT NOT NULL DEFAULT '{}', pid INTEGER NOT NULL DEFAULT 0,
    pid_start TEXT NOT NULL DEFAULT '', data_dir TEXT NOT NULL DEFAULT '', rc INTEGER, started_at REAL NOT NULL,
    finished_at REAL);
CREATE INDEX runs_cluster ON runs (cluster, started_at);
CREATE TABLE events (run_id TEXT NOT NULL, counter INTEGER NOT NULL, event TEXT NOT NULL,
    task TEXT NOT NULL DEFAULT '', host TEXT NOT NULL DEFAULT '', stdout TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL, PRIMARY KEY (run_id, counter));
INSERT INTO clusters VALUES ('old', 'CREATE_COMPLETE', '', 'swarm', 'local', 3, 2, '198.18.5.0/24',
    '198.18.5.2', 'r0', 1.0, 2.0);
INSERT INTO runs VALUES ('r0', 'old', 'create', 'successful', '', '{"playbook": "rax.carina.create"}', 0, '',
    '', 0, 1.0, 2.0);
INSERT INTO events VALUES ('r0', 1, 'playbook_on_start', '', '', 'PLAY', 1.5);
"""


def old_database(home):
    home.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(home / "carina.db")
    db.executescript(SCHEMA_V0)
    db.close()


def columns(home, table):
    db = sqlite3.connect(home / "carina.db")
    try:
        return [row[1] for row in db.execute(f"PRAGMA table_info({table})")], \
            db.execute("PRAGMA user_version").fetchone()[0]
    finally:
        db.close()


def test_an_old_store_is_migrated_in_place_with_its_data(tmp_path):
    old_database(tmp_path)
    assert columns(tmp_path, "clusters")[1] == 0
    store = Store(tmp_path)
    assert store.migrated_from == 0
    names, version = columns(tmp_path, "clusters")
    assert version == SCHEMA_VERSION == len(MIGRATIONS)
    assert {"api_url", "contract_version", "options", "coe_options"} <= set(names)
    cluster = store.get_cluster("old")
    assert (cluster.status, cluster.masters, cluster.nodes, cluster.endpoint) == ("CREATE_COMPLETE", 3, 2, "198.18.5.2")
    assert (cluster.api_url, cluster.contract_version, cluster.options, cluster.coe_options) == ("", 0, {}, {})
    assert store.get_run("r0").status == "successful"
    assert [e["stdout"] for e in store.events("r0")] == ["PLAY"]
    store.update_cluster("old", options={"inventory": "/x"}, contract_version=1)
    assert Store(tmp_path).migrated_from == SCHEMA_VERSION  # once only
    assert Store(tmp_path).get_cluster("old").options == {"inventory": "/x"}
    # An old cluster gets its API URL from its COE's contract until a run records one.
    assert api.Client(tmp_path).get("old").api_url == "tcp://198.18.5.2:2376"


def test_a_new_store_has_the_latest_schema(tmp_path):
    store = Store(tmp_path)
    assert store.migrated_from == 0
    assert columns(tmp_path, "clusters")[1] == SCHEMA_VERSION


def _open_store(home, barrier, queue):
    try:
        barrier.wait(30)  # all at once
        queue.put(Store(home).migrated_from)
    except Exception as exc:  # reported to the test
        queue.put(repr(exc))


def test_concurrent_openers_migrate_an_old_store_once(tmp_path):
    old_database(tmp_path)
    ctx = multiprocessing.get_context("spawn")
    queue, barrier = ctx.Queue(), ctx.Barrier(6)
    procs = [ctx.Process(target=_open_store, args=(str(tmp_path), barrier, queue)) for _ in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    results = [queue.get(timeout=5) for _ in procs]
    assert sorted(results, key=str).count(0) == 1, results
    assert all(r in (0, SCHEMA_VERSION) for r in results), results
    assert columns(tmp_path, "clusters")[0].count("api_url") == 1
    assert Store(tmp_path).get_cluster("old").masters == 3


def test_a_store_newer_than_carina_is_refused(tmp_path):
    Store(tmp_path)
    db = sqlite3.connect(tmp_path / "carina.db")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StoreError, match="newer than this carina reads"):
        Store(tmp_path)


# -- the worker reads the record through the collection's migrate_record -----------------------------
def test_finish_stores_the_api_url_and_contract_version_of_the_record(tmp_path):
    store = Store(tmp_path)
    with store.transaction() as db:
        store.put_cluster(db, Cluster(name="c1", status="CREATE_IN_PROGRESS", coe="swarm", provider="local",
                                      masters=1, nodes=1, current_run="r1"))
        store.add_run(db, Run(id="r1", cluster="c1", action="create", status="running"))
    write_record(tmp_path, "c1", masters=3, nodes=2, endpoint="198.18.7.9", api_url="tcp://198.18.7.9:2376",
                 contract_version=4)
    worker.finish(store, "r1", "successful", 0, "")
    cluster = store.get_cluster("c1")
    assert (cluster.status, cluster.masters, cluster.nodes) == ("CREATE_COMPLETE", 3, 2)
    assert (cluster.endpoint, cluster.api_url, cluster.contract_version) == ("198.18.7.9", "tcp://198.18.7.9:2376", 4)


class WatchedStore(Store):
    """A store that looks at the database after each commit: what another process could read then."""

    def __init__(self, home, look):
        super().__init__(home)
        self.look, self.seen = look, []

    @contextmanager
    def transaction(self):
        with super().transaction() as db:
            yield db
        self.seen.append(self.look(self))


@pytest.mark.parametrize(("action", "status", "left"), [("delete", "successful", None),
                                                        ("delete", "failed", "DELETE_FAILED"),
                                                        ("create", "successful", "CREATE_COMPLETE")])
def test_a_run_never_reads_ended_while_its_cluster_is_not_yet_moved(tmp_path, action, status, left):
    """A waiter (the service deleting the trust of a deleted cluster) acts once the run has ended; the cluster
    must then already be as the run left it, not a moment later."""
    def look(store):
        cluster = store.get_cluster("c1")
        return store.get_run("r1").status, cluster.status if cluster else None

    store = WatchedStore(tmp_path, look)
    with store.transaction() as db:
        store.put_cluster(db, Cluster(name="c1", status=f"{action.upper()}_IN_PROGRESS", coe="swarm",
                                      provider="local", masters=1, nodes=1, current_run="r1"))
        store.add_run(db, Run(id="r1", cluster="c1", action=action, status="running"))
    worker.finish(store, "r1", status, 0 if status == "successful" else 2, "")
    assert store.seen[-1] == (status, left)
    assert all(run == "running" for run, _cluster in store.seen[:-1]), store.seen


def test_a_dead_worker_ends_its_run_and_fails_its_cluster_together(tmp_path):
    def look(store):
        cluster = store.get_cluster("c1")
        return store.get_run("r1").status, cluster.status

    store = WatchedStore(tmp_path, look)
    with store.transaction() as db:
        store.put_cluster(db, Cluster(name="c1", status="DELETE_IN_PROGRESS", coe="swarm", provider="local",
                                      masters=1, nodes=1, current_run="r1"))
        store.add_run(db, Run(id="r1", cluster="c1", action="delete", status="running", pid=os.getpid(),
                              pid_start="not this process's start", started_at=time.time() - 60))
    client = api.Client(tmp_path)
    client.store = store
    assert client.get("c1").status == "DELETE_FAILED"
    assert [seen for seen in store.seen if seen[0] != "running"] == [("crashed", "DELETE_FAILED")]


def test_finish_of_a_failed_run_keeps_what_the_record_knows(tmp_path):
    store = Store(tmp_path)
    with store.transaction() as db:
        store.put_cluster(db, Cluster(name="c1", status="CREATE_IN_PROGRESS", coe="swarm", provider="local",
                                      masters=1, nodes=1, current_run="r1"))
        store.add_run(db, Run(id="r1", cluster="c1", action="create", status="running"))
    state = tmp_path / "clusters" / "c1"
    state.mkdir(parents=True)
    # A record of the first release (schema 0): managers/workers, no api_url.
    (state / "cluster.json").write_text(json.dumps({"name": "c1", "masters": 1, "nodes": 1, "endpoint": "198.18.8.2",
                                                    "managers": ["c1-manager-1"], "workers": ["c1-worker-1"]}))
    worker.finish(store, "r1", "failed", 2, "task 'x' failed on h: boom")
    cluster = store.get_cluster("c1")
    assert (cluster.status, cluster.status_reason) == ("CREATE_FAILED", "task 'x' failed on h: boom")
    assert (cluster.api_url, cluster.contract_version) == ("tcp://198.18.8.2:2376", 1)


# -- credentials and env through the COE's plug-in ----------------------------------------------------
def fake_bundle(home, name, basename="docker", var="DOCKER_CERT_PATH", file=""):
    """A bundle as the COE's credentials entry point writes it: PEM files, `file` if named, and one file per
    shell setting `var` to the bundle folder (or to `file` in it)."""
    state = home / "clusters" / name
    state.mkdir(parents=True, exist_ok=True)
    for item in ("ca.pem", "cert.pem", "key.pem", *filter(None, [file])):
        (state / item).write_text(f"PEM {item}\n")
    value = f"{state}/{file}" if file else str(state)
    (state / f"{basename}.env").write_text(f"export {var}={value}\r\n")
    (state / f"{basename}.fish").write_text(f"set -gx {var} '{value}'\n")
    (state / f"{basename}.ps1").write_text(f"$Env:{var} = '{value}'\n")
    (state / f"{basename}.cmd").write_text(f"set {var}={value}\r\n")
    return state


def test_env_and_credentials_follow_the_contract(client, tmp_path):
    client.create("c1")
    with pytest.raises(api.CarinaError, match="has no credentials yet"):
        client.env("c1")
    state = fake_bundle(client.home, "c1")
    client.store.update_cluster("c1", status="CREATE_COMPLETE", endpoint="198.18.7.2")
    assert client.env("c1") == f"export DOCKER_CERT_PATH={state}\n"
    assert client.env("c1", "cmd") == f"set DOCKER_CERT_PATH={state}\r\n"
    assert client.env("c1", "fish").startswith("set -gx")
    with pytest.raises(api.CarinaError, match="shell 'tcsh': choose one of bash, cmd, fish, powershell, sh, zsh"):
        client.env("c1", "tcsh")
    dest = client.credentials("c1", tmp_path / "bundle")
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        [".carina-bundle", "ca.pem", "cert.pem", "key.pem", "docker.env", "docker.fish", "docker.ps1", "docker.cmd"])
    assert (dest / "key.pem").stat().st_mode & 0o777 == 0o600
    assert (dest / "ca.pem").stat().st_mode & 0o777 == 0o644
    assert (dest / "docker.fish").read_text() == f"set -gx DOCKER_CERT_PATH '{dest}'\n"


def test_health_is_the_plugins_and_unknown_until_complete(client, monkeypatch):
    client.create("c1")
    assert client.health("c1").status == "UNKNOWN"
    client.store.update_cluster("c1", status="CREATE_COMPLETE")
    assert client.health("c1") == coes.Health("UNKNOWN", "the cluster has no endpoint on record")
    client.store.update_cluster("c1", status="CREATE_COMPLETE", endpoint="198.18.7.2")
    seen = []
    monkeypatch.setattr(coes.plugins()["swarm"], "health",
                        lambda self, cluster, bundle: seen.append((self.name, cluster.name, bundle)) or
                        coes.Health("HEALTHY", "fine"))
    assert client.health("c1") == coes.Health("HEALTHY", "fine")
    assert seen == [("swarm", "c1", client.home / "clusters" / "c1")]


def test_cli_prints_the_api_url_of_the_record(client, capsys):
    client.create("c1")
    client.store.update_cluster("c1", status="CREATE_FAILED", endpoint="198.18.7.2", api_url="tcp://198.18.7.2:2376")
    assert cli.main(["get", "c1"]) == 0
    out = capsys.readouterr().out
    assert "api_url:       tcp://198.18.7.2:2376" in out and "endpoint:      198.18.7.2" in out
    assert cli.main(["ls"]) == 0
    assert re.search(r"^c1\s+swarm\s+1\s+1\s+CREATE_FAILED\s+tcp://198\.18\.7\.2:2376$", capsys.readouterr().out, re.M)


def test_cli_choices_come_from_the_registry_and_the_collection(client, capsys):
    for argv in (["create", "c1", "--coe", "mesos"], ["create", "c1", "--provider", "aws"],
                 ["env", "c1", "--shell", "tcsh"]):
        with pytest.raises(SystemExit) as exc:
            cli.main(argv)
        assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"invalid choice: 'mesos' (choose from {', '.join(map(repr, coes.names()))})" in err
    assert "invalid choice: 'aws' (choose from 'local', 'openstack', 'static')" in err
    assert "invalid choice: 'tcsh' (choose from 'bash', 'cmd', 'fish', 'powershell', 'sh', 'zsh')" in err
    assert cli.main(["create", "s1", "--provider", "static"]) == 1
    assert "provider static needs --inventory PATH" in capsys.readouterr().err


def test_env_and_credentials_of_a_coe_with_a_config_file_follow_its_contract(client, tmp_path, capsys):
    client.create("k1", coe="kubernetes")
    coe = coes.get("kubernetes")
    (basename,) = {coe.shells()[shell].rsplit(".", 1)[0] for shell in ("bash", "fish")}
    var, config = coe.env_names()[0], "kubeconfig"
    state = fake_bundle(client.home, "k1", basename, var, config)
    client.store.update_cluster("k1", status="CREATE_COMPLETE", endpoint="198.18.7.2")
    assert sorted(p.name for p in state.iterdir()) == sorted(coe.bundle_files())
    assert client.env("k1") == f"export {var}={state}/{config}\n"
    assert client.env("k1", "fish") == f"set -gx {var} '{state}/{config}'\n"
    dest = client.credentials("k1", tmp_path / "bundle")
    assert sorted(p.name for p in dest.iterdir()) == sorted([".carina-bundle", *coe.bundle_files()])
    modes = {p.name: p.stat().st_mode & 0o777 for p in dest.iterdir()}
    assert modes.pop(config) == modes.pop("key.pem") == 0o600  # the config file holds the client key
    assert set(modes.values()) == {0o644}
    assert (dest / f"{basename}.env").read_bytes() == f"export {var}={dest}/{config}\r\n".encode()
    assert cli.main(["credentials", "k1", "--path", str(tmp_path / "cli")]) == 0
    assert capsys.readouterr().out == (f"credentials of k1 in {tmp_path / 'cli'}; "
                                       f"source {tmp_path / 'cli'}/{basename}.env\n")
    assert cli.main(["env", "k1", "--shell", "powershell"]) == 0
    assert capsys.readouterr().out == f"$Env:{var} = '{state}/{config}'\n"


# -- the COE's own options ----------------------------------------------------------------------------
def extravars_of(client, run):
    return json.loads(client.store.get_run(run.id).params)["extravars"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"coe_options": {"colour": "red"}},
         r"option colour is not an option of coe kubernetes \(its options: .*node_cidr_mask, pod_cidr"),
        ({"coe_options": {"node_cidr_mask": "many"}}, "option node_cidr_mask must be a whole number from 16 to 28, "
                                                      "not 'many'"),
        ({"coe_options": {"node_cidr_mask": "30"}}, "option node_cidr_mask must be a whole number from 16 to 28, "
                                                    "not 30"),
        ({"coe_options": {"pod_cidr": "198.19.0.0/20", "service_cidr": "198.19.8.0/24"}},
         "option pod_cidr 198.19.0.0/20 overlaps service_cidr 198.19.8.0/24"),
        ({"subnet": "198.19.5.0/24"}, "option pod_cidr 198.19.0.0/17 overlaps the hosts' subnet"),  # the defaults
    ],
)
def test_coe_options_are_judged_by_the_planning_rules_before_anything_is_recorded(client, kwargs, message):
    with pytest.raises(api.CarinaError, match=message):
        client.create("k1", coe="kubernetes", **kwargs)
    assert client.list() == [] and client.runs() == [] and client.spawned == []
    assert not (client.home / "clusters").exists() and not (client.home / "runs").exists()


def test_coe_options_are_typed_recorded_shown_and_passed_to_the_playbook(client, capsys):
    cluster, run = client.create("k1", coe="kubernetes", coe_options={
        "node_cidr_mask": "26", "kubernetes_version": "1.20", "dns_image": ""})
    given = {"node_cidr_mask": 26, "kubernetes_version": "1.20"}  # typed; an empty value is the default
    assert cluster.coe_options == given == client.get("k1").coe_options
    assert extravars_of(client, run)["carina_coe_options"] == given
    assert cli.main(["create", "k2", "--coe", "kubernetes", "-O", "node_cidr_mask=25",
                     "--option", "cluster_domain=corp.example", "-o", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["cluster"]["coe_options"] == {"node_cidr_mask": 25, "cluster_domain": "corp.example"}
    assert out["run"]["params"]["extravars"]["carina_coe_options"] == out["cluster"]["coe_options"]
    assert cli.main(["get", "k2"]) == 0
    assert "coe_options:   cluster_domain=corp.example, node_cidr_mask=25\n" in capsys.readouterr().out
    assert cli.main(["get", "k2", "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["coe_options"] == out["cluster"]["coe_options"]
    assert cli.main(["create", "k3", "--coe", "kubernetes", "-O", "colour=red"]) == 1
    assert "carina: option colour is not an option of coe kubernetes" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli.main(["create", "k3", "-O", "colour"])
    assert exc.value.code == 2 and "argument --option/-O: 'colour': give NAME=VALUE" in capsys.readouterr().err
    # Options not given are not passed (the playbook fills the contract's defaults), nor shown.
    cluster, run = client.create("s1")
    assert cluster.coe_options == {} and "carina_coe_options" not in extravars_of(client, run)
    assert cli.main(["get", "s1"]) == 0
    assert "coe_options:   -\n" in capsys.readouterr().out
    assert cli.main(["create", "s2", "-O", "colour=red"]) == 1
    assert ("option colour is not an option of coe swarm (its options: address_pool, address_pool_mask)"
            in capsys.readouterr().err)


def test_a_retried_create_reuses_the_coe_options_and_a_scale_passes_none(client):
    client.create("k1", coe="kubernetes", coe_options={"node_cidr_mask": "26", "dns_image": "dns:1"})
    client.store.update_cluster("k1", status="CREATE_FAILED", status_reason="boom")
    cluster, run = client.create("k1", coe="kubernetes", coe_options={"dns_image": "", "cluster_domain": "c.example"})
    assert cluster.coe_options == {"node_cidr_mask": 26, "cluster_domain": "c.example"}  # dns_image: the default
    assert extravars_of(client, run)["carina_coe_options"] == cluster.coe_options
    client.store.update_run(run.id, status="failed")
    client.store.update_cluster("k1", status="CREATE_FAILED", status_reason="boom")
    masters = ["k1-master-1"]
    write_record(client.home, "k1", coe="kubernetes", master_hosts=masters, worker_hosts=["k1-node-1"],
                 api_url="https://198.18.7.2:6443",
                 coe_options={"pod_cidr": "198.19.0.0/17", "node_cidr_mask": 26, "cluster_domain": "c.example"})
    with pytest.raises(api.CarinaError, match="option pod_cidr cannot change once the cluster exists"):
        client.create("k1", coe="kubernetes", coe_options={"pod_cidr": "198.19.128.0/17"})
    cluster, run = client.create("k1", coe="kubernetes")
    assert extravars_of(client, run)["carina_coe_options"] == cluster.coe_options == {
        "node_cidr_mask": 26, "cluster_domain": "c.example"}
    client.store.update_run(run.id, status="successful")
    client.store.update_cluster("k1", status="CREATE_COMPLETE")
    _cluster, run = client.resize("k1", nodes=2)
    assert "carina_coe_options" not in extravars_of(client, run)  # the playbook takes them from the record
    assert client.get("k1").coe_options == {"node_cidr_mask": 26, "cluster_domain": "c.example"}


# -- the CLI under bad conditions ------------------------------------------------------------------
def one_line_error(capsys, argv):
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("carina: ") and "Traceback" not in err, err
    return err


def test_an_unusable_home_or_store_is_one_line_and_exit_1(tmp_path, monkeypatch, capsys):
    (tmp_path / "file").write_text("not a folder\n")
    monkeypatch.setenv("CARINA_HOME", str(tmp_path / "file"))
    assert "is not a folder" in one_line_error(capsys, ["ls"])
    assert (tmp_path / "file").read_text() == "not a folder\n"
    monkeypatch.setenv("CARINA_HOME", str(tmp_path / "nope" / "deeper"))
    assert "its parent folder" in one_line_error(capsys, ["ls"])
    assert not (tmp_path / "nope").exists()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "carina.db").write_bytes(b"garbage that is not SQLite" * 100)
    monkeypatch.setenv("CARINA_HOME", str(tmp_path / "bad"))
    assert "is not a carina store" in one_line_error(capsys, ["get", "c1"])
    assert (tmp_path / "bad" / "carina.db").read_bytes() == b"garbage that is not SQLite" * 100


def test_output_closed_early_is_one_line_and_exit_1(client, monkeypatch, capsys):
    with client.store.transaction() as db:
        for number in range(3):
            client.store.put_cluster(db, Cluster(name=f"c{number}", status="CREATE_COMPLETE", coe="swarm",
                                                 provider="local", masters=1, nodes=1))
    read, write = os.pipe()
    os.close(read)
    saved = os.dup(1)
    try:
        with os.fdopen(write, "w") as closed:
            monkeypatch.setattr(sys, "stdout", closed)
            assert cli.main(["ls"]) == 1
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    err = capsys.readouterr().err
    assert err == "carina: the output was closed before carina had written it all\n"


def test_credentials_are_exported_through_no_link_and_over_no_file_carina_did_not_write(client, tmp_path):
    client.create("c1")
    state = fake_bundle(client.home, "c1")
    client.store.update_cluster("c1", status="CREATE_COMPLETE", endpoint="198.18.7.2")
    with pytest.raises(api.CarinaError, match="own state folder"):
        client.credentials("c1", state)
    with pytest.raises(api.CarinaError, match="own state folder"):
        client.credentials("c1", state / "pki")
    assert (state / "ca.pem").read_text() == "PEM ca.pem\n"
    # A folder with someone's file of the same name.
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "ca.pem").write_text("my own CA\n")
    with pytest.raises(api.CarinaError, match="carina did not write it"):
        client.credentials("c1", theirs)
    assert (theirs / "ca.pem").read_text() == "my own CA\n" and sorted(p.name for p in theirs.iterdir()) == ["ca.pem"]
    # A link where a bundle file goes, and a link as the folder.
    linked = tmp_path / "linked"
    linked.mkdir()
    (tmp_path / "target").write_text("precious\n")
    (linked / "key.pem").symlink_to(tmp_path / "target")
    with pytest.raises(api.CarinaError, match="symbolic link"):
        client.credentials("c1", linked)
    (tmp_path / "folder-link").symlink_to(theirs)
    with pytest.raises(api.CarinaError, match="symbolic link"):
        client.credentials("c1", tmp_path / "folder-link")
    assert (tmp_path / "target").read_text() == "precious\n"
    # An export may be done again into its own folder, not by another cluster.
    dest = client.credentials("c1", tmp_path / "bundle")
    (state / "ca.pem").write_text("PEM ca.pem rotated\n")
    assert client.credentials("c1", dest) == dest and (dest / "ca.pem").read_text() == "PEM ca.pem rotated\n"
    client.create("c2")
    fake_bundle(client.home, "c2")
    client.store.update_cluster("c2", status="CREATE_COMPLETE", endpoint="198.18.7.3")
    with pytest.raises(api.CarinaError, match="carina did not write it"):
        client.credentials("c2", dest)


def test_a_subnet_that_is_public_or_routed_is_refused_before_anything_is_recorded(client, monkeypatch):
    with pytest.raises(api.CarinaError, match="is not a private range"):
        client.create("pub", subnet="100.128.0.0/24")
    with pytest.raises(api.CarinaError, match="is loopback"):
        client.create("lo", subnet="127.1.0.0/24", allow_public_subnet=True)
    spec = api.planning.spec()
    monkeypatch.setattr(spec, "machine_routes", lambda: [("198.19.128.0/17", "eth7")])
    with pytest.raises(api.CarinaError, match="which this machine routes through eth7"):
        client.create("routed", subnet="198.19.130.0/24")
    assert client.list() == [] and client.spawned == []
    _cluster, run = client.create("pub", subnet="100.128.0.0/24", allow_public_subnet=True)
    assert json.loads(client.store.get_run(run.id).params)["extravars"]["carina_allow_public_subnet"] is True


def test_ssh_control_sockets_fit_a_unix_socket_path_under_a_deep_home(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    near = Path(tempfile.mkdtemp(prefix="r", dir="/tmp"))  # tmp_path itself may be too deep (pytest-xdist)
    try:
        assert paths.control_path_dir(near) == near / "cp"
    finally:
        near.rmdir()
    deep = tmp_path / ("d" * 80) / "runs" / "0123456789ab"
    chosen = paths.control_path_dir(deep)
    assert chosen == tmp_path / "tmp" / f"carina-{os.getuid()}" / "cp"
    assert chosen.stat().st_mode & 0o777 == 0o700 and chosen.parent.stat().st_mode & 0o777 == 0o700
    chosen.parent.chmod(0o755)  # someone else's, or opened up: refused, never used
    with pytest.raises(CarinaError, match="not a private folder"):
        paths.control_path_dir(deep)


# -- the command line's global options, formats, completion ---------------------------------------------
def test_output_and_home_go_before_or_after_the_verb(client, tmp_path, capsys, monkeypatch):
    client.create("c1")
    for argv in (["-o", "yaml", "ls"], ["ls", "-o", "yaml"], ["-o", "json", "ls", "-o", "yaml"]):
        assert cli.main(argv) == 0
        listed = yaml.safe_load(capsys.readouterr().out)
        assert [c["name"] for c in listed] == ["c1"], argv
    assert cli.main(["-o", "json", "get", "c1"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "c1"
    other = tmp_path / "other"
    monkeypatch.setenv("CARINA_HOME", str(tmp_path / "unused"))
    for argv in (["--home", str(other), "-o", "json", "ls"], ["ls", "--home", str(other), "-o", "json"]):
        assert cli.main(argv) == 0
        assert json.loads(capsys.readouterr().out) == [], argv
    assert (other / "carina.db").exists()


def test_env_as_data_names_the_variables(client, capsys):
    client.create("c1")
    state = fake_bundle(client.home, "c1")
    client.store.update_cluster("c1", status="CREATE_COMPLETE", endpoint="198.18.7.2")
    assert cli.main(["env", "c1", "-o", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["env"] == {"DOCKER_HOST": "tcp://198.18.7.2:2376", "DOCKER_TLS_VERIFY": "1",
                           "DOCKER_CERT_PATH": str(state)}
    assert (data["shell"], data["script"]) == ("bash", f"export DOCKER_CERT_PATH={state}\n")
    assert cli.main(["-o", "yaml", "env", "c1", "--shell", "fish"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["script"].startswith("set -gx")


def test_wait_stops_following_after_the_timeout(client, capsys):
    started_at = time.time()
    assert cli.main(["create", "c1", "--wait", "--timeout", "1"]) == cli.EXIT_TIMEOUT
    assert time.time() - started_at < 10
    err = capsys.readouterr().err
    assert "create of c1 not done within 1 s" in err and "carina cancel" in err
    assert client.get("c1").status == "CREATE_IN_PROGRESS"  # the run goes on


def test_logs_carry_no_colour_codes_when_not_on_a_terminal():
    assert cli.plain("\x1b[0;32mok: [h1]\x1b[0m") == "ok: [h1]"


def test_bash_completion_completes_verbs_options_and_names(client, tmp_path):
    client.create("c1")
    bindir = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    script = subprocess.run(["carina", "completion", "bash"], capture_output=True, text=True, check=True,
                            env=os.environ | bindir).stdout
    probe = tmp_path / "probe.sh"
    probe.write_text(script + 'COMP_WORDS=(carina re); COMP_CWORD=1; _carina; echo "${COMPREPLY[*]}"\n'
                     'COMP_WORDS=(carina create x --ti); COMP_CWORD=3; _carina; echo "${COMPREPLY[*]}"\n'
                     'COMP_WORDS=(carina get ""); COMP_CWORD=2; _carina; echo "${COMPREPLY[*]}"\n')
    lines = subprocess.run(["bash", str(probe)], capture_output=True, text=True, check=True, timeout=60,
                           env=os.environ | bindir | {"CARINA_HOME": str(client.home)}).stdout.splitlines()
    assert lines == ["resize repair", "--timeout", "c1"]
    fish = subprocess.run(["carina", "completion", "fish"], capture_output=True, text=True, check=True,
                          env=os.environ | bindir).stdout
    assert "complete -c carina -n '__fish_seen_subcommand_from create' -l timeout" in fish
