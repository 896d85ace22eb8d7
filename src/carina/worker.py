"""The detached process that runs one playbook through ansible-runner and records the outcome.

Started by carina.api as `python -m carina.worker RUN_ID` in a session of its own, so that it
outlives the command that started it. It stores every event, moves the cluster to *_COMPLETE or
*_FAILED (with the failing task, host and message as the reason), scrubs the run's artifacts of
the environment, and stops any SSH control master the run left behind.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import time
from pathlib import Path

import ansible_runner

from carina import coes, paths, planning
from carina.hygiene import scrub_artifacts, stop_run_processes
from carina.store import Store


class Recorder:
    """event_handler for ansible-runner: keeps every event and the first real failure."""

    def __init__(self, store: Store, run_id: str):
        self.store = store
        self.run_id = run_id
        self.failure: dict | None = None
        self.item_failures: dict[tuple[str, str], str] = {}  # (task, host) -> the first failed loop item's message

    def __call__(self, event: dict) -> bool:
        data = event.get("event_data") or {}
        name = event.get("event", "")
        self.store.add_event(self.run_id, counter=int(event.get("counter", 0)), event=name,
                             task=str(data.get("task", "")), host=str(data.get("host", "")),
                             stdout=str(event.get("stdout", ""))[:8000])
        where = (str(data.get("task", "")), str(data.get("host", "")))
        if name == "runner_item_on_failed" and where not in self.item_failures:
            res = data.get("res") or {}
            self.item_failures[where] = str(res.get("msg") or res.get("stderr") or "")
        if name in ("runner_on_failed", "runner_on_unreachable") and not data.get("ignore_errors"):
            res = data.get("res") or {}
            msg = res.get("msg") or res.get("stderr") or "failed"
            # A loop's "One or more items failed" says nothing: the first failed item's own message does.
            items = [item for item in res.get("results") or [] if isinstance(item, dict) and item.get("failed")]
            if items:
                msg = items[0].get("msg") or items[0].get("stderr") or msg
            elif self.item_failures.get(where):
                msg = self.item_failures[where]
            if self.failure is None:
                self.failure = {"task": data.get("task", ""), "host": data.get("host", ""), "msg": str(msg)[:1000],
                                "unreachable": name == "runner_on_unreachable"}
        return True

    def reason(self) -> str:
        if not self.failure:
            return ""
        what = "unreachable" if self.failure["unreachable"] else "failed"
        return f"task '{self.failure['task']}' {what} on {self.failure['host']}: {self.failure['msg']}"


def finish(store: Store, run_id: str, status: str, rc: int | None, reason: str) -> None:
    """Record the run's outcome and move its cluster, reading the cluster record the playbook wrote
    (through the collection's migrate_record, so any record schema reads the same). Both are written in one
    transaction: a waiter that sees the run ended never sees a deleted cluster still there."""
    run = store.get_run(run_id)
    assert run is not None
    ended = {"status": status, "rc": rc, "reason": reason, "finished_at": time.time()}
    cluster = store.get_cluster(run.cluster)
    if cluster is None or cluster.current_run != run_id:
        store.update_run(run_id, **ended)
        return
    if status == "successful" and run.action == "delete":
        store.end_run(run_id, ended, run.cluster, None)
        return
    prefix = {"create": "CREATE", "delete": "DELETE"}.get(run.action, "UPDATE")
    record = {}
    with contextlib.suppress(Exception):  # the run must end with a status whatever the record holds
        record = planning.read_record(paths.state_dir(store.home, run.cluster))
    endpoint = str(record.get("endpoint") or cluster.endpoint)
    moved = {"endpoint": endpoint, "subnet": str(record.get("subnet") or cluster.subnet),
             "api_url": str(record.get("api_url") or api_url(cluster.coe, endpoint) or cluster.api_url),
             "contract_version": int(record.get("contract_version") or cluster.contract_version)}
    if status == "successful":
        moved.update(status=f"{prefix}_COMPLETE", status_reason="", masters=int(record.get("masters", cluster.masters)),
                     nodes=int(record.get("nodes", cluster.nodes)))
    else:
        moved.update(status=f"{prefix}_FAILED", status_reason=reason)
    store.end_run(run_id, ended, run.cluster, moved)


def api_url(coe: str, endpoint: str) -> str:
    """The API URL of an endpoint by the COE's contract, for a record that does not carry one."""
    with contextlib.suppress(Exception):
        return coes.get(coe).api_url(endpoint)
    return ""


def main(argv: list[str]) -> int:
    run_id = argv[1]
    store = Store(paths.home())
    run = store.get_run(run_id)
    if run is None:
        print(f"no run {run_id}", file=sys.stderr)
        return 2
    params = json.loads(run.params)
    data_dir = Path(run.data_dir)
    cancelled = {"flag": False}

    def on_term(_signum, _frame):
        cancelled["flag"] = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    store.update_run(run_id, status="running")
    recorder = Recorder(store, run_id)
    status, rc, reason = "failed", None, ""
    try:
        # A cluster's own inventory (provider static) comes after the run's (localhost).
        inventory = [str(data_dir / "inventory"), *params["inventory"]] if params.get("inventory") else None
        result = ansible_runner.run(
            private_data_dir=str(data_dir),
            inventory=inventory,
            ident="run",
            playbook=params["playbook"],
            extravars=params["extravars"],
            envvars=params["envvars"],
            event_handler=recorder,
            cancel_callback=lambda: cancelled["flag"],
            quiet=True,
            timeout=params.get("timeout", 3600),
        )
        status, rc = result.status, result.rc
        if status == "successful":
            reason = ""
        elif status == "canceled":
            reason = f"canceled (run {run_id})"
        elif status == "timeout":
            reason = f"timed out: not done within {params.get('timeout', 3600)} s, stopped (run {run_id})"
        else:
            reason = recorder.reason() or f"ansible-playbook ended with rc={rc}; see `carina logs {run_id}`"
    except Exception as exc:  # the run must end with a status whatever happened
        reason = f"the run could not start: {exc}"
    finally:
        scrub_artifacts(data_dir)
        stop_run_processes(data_dir)
        finish(store, run_id, status, rc, reason)
    return 0 if status == "successful" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
