"""How `make test` spreads the test modules over its pytest-xdist workers.

- Each integration module is one group, run whole by one worker: its module fixtures make the clusters
  its tests share, and its teardown checks that nothing of them is left.
- The modules on the test cloud (one per session: the first of them starts it) form one group with
  testcloud's own tests, whose emulator hands out the same subnets as the test cloud's.
- The unit tests are one group.
- Groups are handed out heaviest first (in collection order, which `make test` keeps with
  `--no-loadscope-reorder`), so that no long one starts last. The weights are the minutes each group
  took in a clean-clone `make test` with 3 workers on a 2-CPU machine (2026-12-08: 45.6 min in all;
  the table at the end of every run gives them). testcloud, which runs on one worker, is the longest.

Without `-n` (a plain `pytest`), only the order applies. At the end, a table gives each group's worker, when it
started and ended, and the minutes its tests took: what the weights are measured from.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SPANS: dict[str, list] = {}  # group: [worker, first start, last stop, seconds in its tests]

ON_THE_TEST_CLOUD = frozenset({"test_magnum_driver", "test_openstack_cluster", "test_service_keystone",
                               "test_site_role"})
WEIGHTS = {
    "testcloud": 41.7, "test_kubernetes_cluster": 18.6, "test_static_cluster": 16.8, "test_carina_cli": 12.4,
    "test_repair": 11.2, "test_molecule": 7.9, "test_swarm_cluster": 7.2, "test_ownership": 4.4,
    "test_service_role": 4.1, "test_service": 3.4, "test_local_hosts": 2.3, "test_awx_jobs": 1.6, "unit": 1.3,
    "test_galaxy_install": 1.3, "test_panel": 1.1,
}


def group_of(path: str) -> str:
    """The group of a test file, given by its path relative to the repository."""
    parts = Path(path).parts
    if parts[0] == "testcloud":
        return "testcloud"
    if "integration" in parts:
        stem = Path(path).stem
        return "testcloud" if stem in ON_THE_TEST_CLOUD else stem
    return "unit"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: -WEIGHTS.get(group_of(item.nodeid.split("::", maxsplit=1)[0]), 0.5))  # stable


def pytest_xdist_make_scheduler(config, log):
    """Load scheduling whose unit of work is a group, not a test."""
    from xdist.scheduler import LoadScopeScheduling  # noqa: PLC0415 (only when pytest-xdist runs)

    class ByGroup(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid.split("::", maxsplit=1)[0])

    return ByGroup(config, log)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    group = group_of(report.nodeid.split("::", maxsplit=1)[0])
    worker = getattr(getattr(report, "node", None), "gateway", None)
    span = SPANS.setdefault(group, [worker.id if worker else "-", report.start, report.stop, 0.0])
    span[1], span[2] = min(span[1], report.start), max(span[2], report.stop)
    span[3] += report.duration


def pytest_terminal_summary(terminalreporter) -> None:
    if not SPANS:
        return
    began = min(span[1] for span in SPANS.values())
    terminalreporter.write_sep("=", "test groups: worker, minutes from the first test's start, minutes in tests")
    for group, (worker, start, stop, seconds) in sorted(SPANS.items(), key=lambda item: item[1][1]):
        terminalreporter.write_line(f"{group:28} {worker:5} {(start - began) / 60:6.1f} -> {(stop - began) / 60:6.1f}"
                                    f" {seconds / 60:7.1f}")
