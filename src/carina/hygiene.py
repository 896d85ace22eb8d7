"""Clean-up after a run: no secrets left in its artifacts, no process of it left running."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

# Environment variable names whose values never stay in a run's files.
SECRET_MARKERS = ("PASSWORD", "TOKEN", "SECRET", "KEY", "CREDENTIAL", "AUTH")


def scrub_artifacts(data_dir: Path) -> None:
    """ansible-runner records the whole environment in artifacts/*/command and env/: keep names only."""
    for command in Path(data_dir).glob("artifacts/*/command"):
        try:
            record = json.loads(command.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record.get("env"), dict):
            record["env"] = sorted(record["env"])
        command.write_text(json.dumps(record))
        command.chmod(0o600)
    for env_file in Path(data_dir).glob("env/envvars"):
        lines = [line for line in env_file.read_text().splitlines()
                 if not any(marker in line.split(":", 1)[0].upper() for marker in SECRET_MARKERS)]
        env_file.write_text("\n".join(lines) + "\n")


def run_processes(data_dir: Path) -> list[int]:
    """Processes of a run: ansible-playbook, its forks and SSH control masters all name its folder."""
    marker = str(data_dir).encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state not in ("Z", "X"):
            found.append(int(proc.name))
    return found


def stop_run_processes(data_dir: Path, grace: float = 5.0) -> list[int]:
    """SIGTERM every process of the run, SIGKILL what is left after `grace` seconds."""
    pids = run_processes(data_dir)
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.time() + grace
    while time.time() < deadline and run_processes(data_dir):
        time.sleep(0.1)
    for pid in run_processes(data_dir):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return pids
