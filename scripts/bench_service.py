"""Benchmark of `carina serve` under load: with 100 clusters recorded, Magnum's cluster list and show from 20
concurrent clients on 127.0.0.1, against a baseline measured in the same run (the versions document, which reads
nothing). Prints milliseconds per request (median and 95th percentile). Run alone: python scripts/bench_service.py
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

CLUSTERS = 100
CLIENTS = 20
REQUESTS = 25  # per client and measure
GOAL_MS = 50.0  # median of list and show


def seed(home: Path) -> list[str]:
    """100 clusters as finished creates leave them in the store (their endpoints refuse at once: the health probe
    answers UNHEALTHY without waiting)."""
    from carina.store import Cluster, Store  # noqa: PLC0415 - after sys.path

    store = Store(home)
    ids = []
    with store.transaction() as db:
        for i in range(CLUSTERS):
            cluster_id = uuid.uuid4().hex
            store.put_cluster(db, Cluster(name=f"bench-{i:03d}", status="CREATE_COMPLETE", coe="swarm",
                                          provider="local", masters=1, nodes=2, endpoint="127.0.0.1",
                                          uuid=cluster_id, extra={"name": f"bench-{i:03d}"}))
            ids.append(cluster_id)
    return ids


@contextlib.contextmanager
def changing(home: Path):
    """A writer committing to the store every 20 ms (a run's status updates, faster than any real run)."""
    from carina.store import Store  # noqa: PLC0415 - after sys.path

    store, stop = Store(home), threading.Event()

    def write() -> None:
        while not stop.wait(0.02):
            with store.transaction() as db:
                cluster = store.get_cluster("bench-000", db)
                cluster.updated_at = time.time()
                store.put_cluster(db, cluster)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        yield
    finally:
        stop.set()
        writer.join()


def timed(url: str) -> float:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as answer:  # noqa: S310 - our own service on 127.0.0.1
        answer.read()
        assert answer.status == 200, answer.status
    return (time.perf_counter() - started) * 1000


def load(urls: list[str]) -> list[float]:
    """Each of CLIENTS threads asks REQUESTS times, the URL picked at random from `urls`."""
    def client(seed_: int) -> list[float]:
        pick = random.Random(seed_)  # noqa: S311 - not for secrets
        return [timed(pick.choice(urls)) for _ in range(REQUESTS)]

    with ThreadPoolExecutor(CLIENTS) as pool:
        return [ms for result in pool.map(client, range(CLIENTS)) for ms in result]


def bench() -> list[tuple[str, float, str]]:
    with tempfile.TemporaryDirectory(prefix="carina-bench-service-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        ids = seed(home)
        proc = subprocess.Popen([sys.executable, "-m", "carina", "serve", "--home", str(home), "--port", "0"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
        try:
            base = re.search(r"(http://127\.0\.0\.1:\d+)/v1", proc.stdout.readline())[1]
            listing = json.loads(urllib.request.urlopen(base + "/v1/clusters", timeout=30).read())  # noqa: S310
            assert len(listing["clusters"]) == CLUSTERS, len(listing["clusters"])
            shows = [f"{base}/v1/clusters/{cluster_id}" for cluster_id in ids]
            for url in shows:  # each cluster's first show waits for its first health probe
                timed(url)
            figures = {"baseline": load([base + "/"]), "list": load([base + "/v1/clusters"]), "show": load(shows),
                       "detail": load([base + "/v1/clusters/detail"])}
            with changing(home):  # every listing read afresh: the cost without the listing cache
                figures["changing"] = load([base + "/v1/clusters"])
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    rows = []
    labels = {"baseline": "baseline: GET / (versions, reads nothing)",
              "list": f"GET /v1/clusters ({CLUSTERS} clusters)", "show": "GET /v1/clusters/{uuid}",
              "detail": f"GET /v1/clusters/detail ({CLUSTERS} clusters)",
              "changing": "GET /v1/clusters while the store changes every 20 ms (no cache)"}
    for key, values in figures.items():
        median = statistics.median(values)
        p95 = statistics.quantiles(values, n=20)[-1]
        goal = f"<= {GOAL_MS:g} ms median " + ("met" if median <= GOAL_MS else "MISSED") \
            if key in ("list", "show") else ""
        rows.append((f"service, {CLIENTS} clients: {labels[key]}, median ms (p95 {p95:.1f})", median, goal))
    return rows


def main() -> None:
    rows = bench()
    print(f"\n{'measure':<82} {'value':>8}  goal")
    for label, value, goal in rows:
        print(f"{label:<82} {value:8.2f}  {goal}")


if __name__ == "__main__":
    main()
