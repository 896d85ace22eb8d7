"""The carina package without Ansible runs: store, validation, reconciliation, worker helpers, CLI."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import time

import pytest

from carina import api, cli, hygiene, worker
from carina.store import Cluster, Conflict, Run, Store


@pytest.fixture
def client(tmp_path, monkeypatch):
    monkeypatch.setenv("CARINA_HOME", str(tmp_path))
    spawned = []
    # Unit tests never start playbooks: record what would be spawned instead.
    monkeypatch.setattr(api.Client, "_spawn", lambda self, run: spawned.append(run))
    c = api.Client(tmp_path)
    c.spawned = spawned
    return c


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
    _cluster, run = client.grow("c1", 2)
    assert json.loads(client.store.get_run(run.id).params)["extravars"]["carina_nodes"] == 3
    client.store.update_run(run.id, status="successful")
    client.store.update_cluster("c1", status="UPDATE_COMPLETE")
    _cluster, run = client.resize("c1", nodes=0, remove=["c1-worker-1"])
    extravars = json.loads(client.store.get_run(run.id).params)["extravars"]
    assert extravars["carina_nodes"] == 0 and extravars["carina_remove_nodes"] == ["c1-worker-1"]
    with pytest.raises(api.CarinaError, match="grow adds 1 or more"):
        client.grow("c1", 0)


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
